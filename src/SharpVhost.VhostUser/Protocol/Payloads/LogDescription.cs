using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// SET_LOG_BASE: <c>{u64 mmap_size; u64 mmap_offset}</c>: the dirty log (one bit per 4 KiB guest
/// page) starts at <see cref="MmapOffset"/> in the accompanying fd and is <see cref="MmapSize"/> bytes.
/// </summary>
public readonly record struct LogDescription(ulong MmapSize, ulong MmapOffset) : IVhostUserPayload<LogDescription>
{
    public const int Size = 16;
    public int WireSize => Size;

    public static LogDescription Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, Size, "log description");
        return new LogDescription(
            BinaryPrimitives.ReadUInt64LittleEndian(payload),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, Size, "log description");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, MmapSize);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], MmapOffset);
    }
}
