using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>A single u64: feature masks, counts, status, and the REPLY_ACK status (0 = success).</summary>
public readonly record struct U64Payload(ulong Value) : IVhostUserPayload<U64Payload>
{
    public const int Size = 8;
    public int WireSize => Size;

    public static U64Payload Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, Size, "u64");
        return new U64Payload(BinaryPrimitives.ReadUInt64LittleEndian(payload));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, Size, "u64");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Value);
    }
}
