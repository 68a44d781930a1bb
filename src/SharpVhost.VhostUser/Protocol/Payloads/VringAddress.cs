using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>Flags of <see cref="VringAddress"/>.</summary>
[Flags]
public enum VringAddressFlags : uint
{
    None = 0,
    /// <summary>Log writes to the used ring at <see cref="VringAddress.Log"/>.</summary>
    Log = 1,
}

/// <summary>
/// SET_VRING_ADDR: <c>{u32 index; u32 flags; u64 desc; u64 used; u64 avail; u64 log}</c>. The three
/// ring addresses are front-end virtual addresses (or IOVAs with ACCESS_PLATFORM); <see cref="Log"/>
/// is a guest-physical address used only for dirty logging.
/// </summary>
public readonly record struct VringAddress(
    uint Index, VringAddressFlags Flags, ulong Descriptor, ulong Used, ulong Available, ulong Log)
    : IVhostUserPayload<VringAddress>
{
    public const int Size = 40;
    public int WireSize => Size;

    public static VringAddress Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, Size, "vring address");
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]);
        if ((flags & ~(uint)VringAddressFlags.Log) != 0)
            throw new VhostUserProtocolException($"Vring address flags 0x{flags:x} has unknown bits set.");
        return new VringAddress(
            BinaryPrimitives.ReadUInt32LittleEndian(payload),
            (VringAddressFlags)flags,
            BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[24..]),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[32..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, Size, "vring address");
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Index);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], (uint)Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Descriptor);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], Used);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], Available);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[32..], Log);
    }
}
