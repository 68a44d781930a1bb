using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// One region of guest memory: <c>{u64 guest_phys_addr; u64 memory_size; u64 userspace_addr;
/// u64 mmap_offset}</c>. The region's bytes start at <see cref="MmapOffset"/> in the fd that came
/// with the message. Only the layout is checked here; overlap, wrap-around and zero size are for the
/// memory layer to reject.
/// </summary>
public readonly record struct MemoryRegion(ulong GuestPhysAddr, ulong Size, ulong UserAddr, ulong MmapOffset)
{
    public const int WireSize = 32;

    public static MemoryRegion Parse(ReadOnlySpan<byte> bytes)
    {
        PayloadCheck.Size(bytes, WireSize, "memory region");
        return new MemoryRegion(
            BinaryPrimitives.ReadUInt64LittleEndian(bytes),
            BinaryPrimitives.ReadUInt64LittleEndian(bytes[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(bytes[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(bytes[24..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, WireSize, "memory region");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, GuestPhysAddr);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Size);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], UserAddr);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], MmapOffset);
    }
}
