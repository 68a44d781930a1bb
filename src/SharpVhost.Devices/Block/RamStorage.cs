using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>A disk in anonymous memory (lazily allocated by the kernel, zero until written).</summary>
public sealed class RamStorage : IBlockStorage
{
    private readonly MemoryMapping _memory;

    public long Capacity { get; }
    public bool ReadOnly => false;
    public bool SupportsDiscard => true;
    public string Description => $"RAM disk of {Capacity >> 20} MiB";

    public RamStorage(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
        _memory = MemoryMapping.Anonymous((ulong)capacity);
    }

    public void Read(Span<byte> destination, long offset) => _memory.GetSpan((ulong)offset, destination.Length).CopyTo(destination);
    public void Write(ReadOnlySpan<byte> source, long offset) => source.CopyTo(_memory.GetSpan((ulong)offset, source.Length));
    public void Flush() { }
    public void Discard(long offset, long length) => WriteZeroes(offset, length, true);

    public void WriteZeroes(long offset, long length, bool unmap)
    {
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(1 << 30, length - done);
            _memory.GetSpan((ulong)(offset + done), n).Clear();
            done += n;
        }
    }

    public IBlockQueueEngine CreateQueueEngine(int depth) => new SynchronousQueueEngine(this, depth);
    public void Dispose() => _memory.Dispose();
}

/// <summary>Discards writes and leaves read buffers untouched, like qemu's null-co: measures the device path alone.</summary>
public sealed class NullStorage(long capacity) : IBlockStorage
{
    public long Capacity { get; } = capacity;
    public bool ReadOnly => false;
    public bool SupportsDiscard => true;
    public string Description => $"null disk of {Capacity >> 20} MiB";
    public void Read(Span<byte> destination, long offset) { }
    public void Write(ReadOnlySpan<byte> source, long offset) { }
    public void Flush() { }
    public void Discard(long offset, long length) { }
    public void WriteZeroes(long offset, long length, bool unmap) { }
    public IBlockQueueEngine CreateQueueEngine(int depth) => new SynchronousQueueEngine(this, depth);
    public void Dispose() { }
}
