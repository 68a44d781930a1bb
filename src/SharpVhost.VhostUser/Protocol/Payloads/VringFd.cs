using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// The u64 of SET_VRING_KICK / CALL / ERR: bits 0-7 are the queue index, bit 8 says that no fd
/// was sent (the ring is to be polled instead). Other bits are reserved and rejected.
/// </summary>
public readonly record struct VringFd(byte Index, bool NoFd) : IVhostUserPayload<VringFd>
{
    public const int Size = 8;
    private const ulong IndexMask = 0xFF;
    private const ulong NoFdBit = 1UL << 8;

    public int WireSize => Size;

    /// <summary>The number of fds that must accompany this payload.</summary>
    public int ExpectedFdCount => NoFd ? 0 : 1;

    public static VringFd Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, Size, "vring fd");
        return FromU64(BinaryPrimitives.ReadUInt64LittleEndian(payload));
    }

    /// <summary>Decodes the u64 form; throws on reserved bits.</summary>
    public static VringFd FromU64(ulong value)
    {
        if ((value & ~(IndexMask | NoFdBit)) != 0)
            throw new VhostUserProtocolException($"Vring fd payload 0x{value:x} has reserved bits set.");
        return new VringFd((byte)(value & IndexMask), (value & NoFdBit) != 0);
    }

    public ulong ToU64() => Index | (NoFd ? NoFdBit : 0);

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, Size, "vring fd");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, ToU64());
    }
}
