using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// VRING_HOST_NOTIFIER_MSG: <c>{u64 index_and_flags; u64 size; u64 offset}</c>. Bits 0-7 of the first
/// field are the queue index, bit 8 means "no fd: remove the notifier".
/// </summary>
public readonly record struct VringArea(byte Index, bool NoFd, ulong Size, ulong Offset) : IVhostUserPayload<VringArea>
{
    public const int WireSizeBytes = 24;
    public int WireSize => WireSizeBytes;

    public static VringArea Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, WireSizeBytes, "vring area");
        var head = VringFd.FromU64(BinaryPrimitives.ReadUInt64LittleEndian(payload));
        return new VringArea(head.Index, head.NoFd,
            BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[16..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, WireSizeBytes, "vring area");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, new VringFd(Index, NoFd).ToU64());
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Size);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], Offset);
    }
}
