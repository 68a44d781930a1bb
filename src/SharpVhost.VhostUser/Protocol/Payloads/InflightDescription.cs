using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// GET/SET_INFLIGHT_FD: <c>{u64 mmap_size; u64 mmap_offset; u16 num_queues; u16 queue_size}</c>,
/// padded to 24 bytes on the wire as QEMU and DPDK send it.
/// </summary>
public readonly record struct InflightDescription(ulong MmapSize, ulong MmapOffset, ushort NumQueues, ushort QueueSize)
    : IVhostUserPayload<InflightDescription>
{
    public const int Size = 24;
    public int WireSize => Size;

    public static InflightDescription Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, Size, "inflight description");
        return new InflightDescription(
            BinaryPrimitives.ReadUInt64LittleEndian(payload),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]),
            BinaryPrimitives.ReadUInt16LittleEndian(payload[16..]),
            BinaryPrimitives.ReadUInt16LittleEndian(payload[18..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, Size, "inflight description");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, MmapSize);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], MmapOffset);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[16..], NumQueues);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[18..], QueueSize);
        destination.Slice(20, 4).Clear();
    }
}
