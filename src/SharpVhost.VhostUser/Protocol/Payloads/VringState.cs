using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// <c>{u32 index; u32 num}</c>: a queue index and a number whose meaning depends on the request
/// (queue size, next avail index, enable flag, endianness).
/// </summary>
public readonly record struct VringState(uint Index, uint Num) : IVhostUserPayload<VringState>
{
    public const int Size = 8;
    public int WireSize => Size;

    public static VringState Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, Size, "vring state");
        return new VringState(
            BinaryPrimitives.ReadUInt32LittleEndian(payload),
            BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, Size, "vring state");
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Index);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Num);
    }
}
