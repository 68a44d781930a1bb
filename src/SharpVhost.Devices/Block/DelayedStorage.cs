namespace SharpVhost.Devices.Block;

/// <summary>
/// Adds a fixed latency to every data request, emulating a slow disk. Crash-recovery tests use it
/// so that requests really are in flight when the backend is killed.
/// </summary>
public sealed class DelayedStorage(IBlockStorage inner, TimeSpan delay) : IBlockStorage
{
    public long Capacity => inner.Capacity;
    public bool ReadOnly => inner.ReadOnly;
    public bool SupportsDiscard => inner.SupportsDiscard;
    public string Description => $"{inner.Description}, +{delay.TotalMilliseconds} ms per request";

    public void Read(Span<byte> destination, long offset)
    {
        Thread.Sleep(delay);
        inner.Read(destination, offset);
    }

    public void Write(ReadOnlySpan<byte> source, long offset)
    {
        Thread.Sleep(delay);
        inner.Write(source, offset);
    }

    public void Flush() => inner.Flush();
    public void Discard(long offset, long length) => inner.Discard(offset, length);
    public void WriteZeroes(long offset, long length, bool unmap) => inner.WriteZeroes(offset, length, unmap);
    /// <summary>Synchronous: the delay is a sleep on the queue's thread (one request at a time per queue).</summary>
    public IBlockQueueEngine CreateQueueEngine(int depth) => new SynchronousQueueEngine(this, depth);
    public void Dispose() => inner.Dispose();
}
