namespace SharpVhost.Virtio;

/// <summary>One piece of a buffer: guest-physical address, length, direction, and where it is mapped here.</summary>
public readonly record struct BufferSegment(ulong GuestAddress, uint Length, bool DeviceWritable, nint Host);

/// <summary>
/// A descriptor chain popped from a queue: device-readable segments first, then device-writable ones,
/// each already translated to our mapping. Reused between pops (no allocation on the hot path); valid
/// only inside the memory read section it was popped in, and only until the next pop.
/// </summary>
public sealed unsafe class DescriptorChain
{
    private BufferSegment[] _segments;

    public DescriptorChain(int capacity = 64) => _segments = new BufferSegment[capacity];

    /// <summary>The head descriptor index (split) or buffer id (packed): what the used element names.</summary>
    public ushort Id { get; internal set; }
    /// <summary>How many ring descriptors the chain occupied (packed rings advance by this much).</summary>
    public int DescriptorCount { get; internal set; }
    public int Count { get; private set; }
    public int ReadableCount { get; private set; }
    public uint ReadableBytes { get; private set; }
    public uint WritableBytes { get; private set; }

    public ReadOnlySpan<BufferSegment> Segments => _segments.AsSpan(0, Count);
    public ReadOnlySpan<BufferSegment> Readable => _segments.AsSpan(0, ReadableCount);
    public ReadOnlySpan<BufferSegment> Writable => _segments.AsSpan(ReadableCount, Count - ReadableCount);

    /// <summary>A span over segment <paramref name="index"/> in guest memory (zero copy).</summary>
    public Span<byte> GetSpan(int index)
    {
        ref readonly var s = ref _segments[index];
        return new Span<byte>((void*)s.Host, (int)s.Length);
    }

    public Span<byte> GetSpan(in BufferSegment segment) => new((void*)segment.Host, (int)segment.Length);

    internal void Reset(ushort id)
    {
        Id = id;
        Count = ReadableCount = 0;
        ReadableBytes = WritableBytes = 0;
        DescriptorCount = 0;
    }

    internal void Add(in BufferSegment segment)
    {
        if (segment.DeviceWritable)
        {
            if (WritableBytes + segment.Length < WritableBytes) throw new VirtqueueException("chain's writable length overflows 32 bits");
            WritableBytes += segment.Length;
        }
        else
        {
            if (Count != ReadableCount) throw new VirtqueueException("device-readable descriptor after a device-writable one");
            if (ReadableBytes + segment.Length < ReadableBytes) throw new VirtqueueException("chain's readable length overflows 32 bits");
            ReadableBytes += segment.Length;
            ReadableCount++;
        }
        if (Count == _segments.Length) Array.Resize(ref _segments, _segments.Length * 2);
        _segments[Count++] = segment;
    }

    /// <summary>Copies the readable bytes from <paramref name="offset"/> into <paramref name="destination"/>; returns bytes copied.</summary>
    public int CopyFromReadable(int offset, Span<byte> destination)
    {
        int copied = 0;
        foreach (var s in Readable)
        {
            if (copied == destination.Length) break;
            if (offset >= s.Length) { offset -= (int)s.Length; continue; }
            var span = GetSpan(s)[offset..];
            offset = 0;
            int n = Math.Min(span.Length, destination.Length - copied);
            span[..n].CopyTo(destination[copied..]);
            copied += n;
        }
        return copied;
    }

    /// <summary>Copies <paramref name="source"/> into the writable segments from <paramref name="offset"/>; returns bytes copied.</summary>
    public int CopyToWritable(int offset, ReadOnlySpan<byte> source)
    {
        int copied = 0;
        foreach (var s in Writable)
        {
            if (copied == source.Length) break;
            if (offset >= s.Length) { offset -= (int)s.Length; continue; }
            var span = GetSpan(s)[offset..];
            offset = 0;
            int n = Math.Min(span.Length, source.Length - copied);
            source.Slice(copied, n).CopyTo(span);
            copied += n;
        }
        return copied;
    }
}
