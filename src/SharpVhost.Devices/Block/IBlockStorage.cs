namespace SharpVhost.Devices.Block;

/// <summary>
/// What a virtio-blk device stores its sectors in. Reads and writes take spans that point straight
/// into guest memory: no bounce buffer between the storage and the guest.
/// Implementations are called from several queue workers at once and must be thread-safe.
/// </summary>
public interface IBlockStorage : IDisposable
{
    long Capacity { get; }
    bool ReadOnly { get; }
    /// <summary>Whether DISCARD and WRITE_ZEROES can be offered.</summary>
    bool SupportsDiscard { get; }
    string Description { get; }

    void Read(Span<byte> destination, long offset);
    void Write(ReadOnlySpan<byte> source, long offset);
    /// <summary>Makes every completed write durable (fdatasync for files).</summary>
    void Flush();
    void Discard(long offset, long length);
    void WriteZeroes(long offset, long length, bool unmap);

    /// <summary>
    /// The asynchronous submission context of one queue, created when the queue starts and disposed when
    /// it stops; <paramref name="depth"/> bounds the operations in flight at once (the queue's size).
    /// Storage that completes at once (RAM, null) returns a <see cref="SynchronousQueueEngine"/>.
    /// </summary>
    IBlockQueueEngine CreateQueueEngine(int depth);
}
