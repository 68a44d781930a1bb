using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>ADD_MEM_REG / REM_MEM_REG: <c>{u64 padding; region}</c>.</summary>
public readonly record struct SingleMemoryRegion(MemoryRegion Region) : IVhostUserPayload<SingleMemoryRegion>
{
    public const int Size = 8 + MemoryRegion.WireSize;
    public int WireSize => Size;

    public static SingleMemoryRegion Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, Size, "single memory region");
        return new SingleMemoryRegion(MemoryRegion.Parse(payload[8..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, Size, "single memory region");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, 0);
        Region.Write(destination[8..]);
    }
}
