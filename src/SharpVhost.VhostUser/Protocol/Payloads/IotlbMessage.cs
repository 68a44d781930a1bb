using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>Access rights of an IOTLB entry.</summary>
public enum IotlbPermission : byte
{
    None = 0,
    ReadOnly = 1,
    WriteOnly = 2,
    ReadWrite = 3,
}

/// <summary>What an IOTLB message asks for.</summary>
public enum IotlbMessageType : byte
{
    /// <summary>Back-end to front-end: no entry covers this IOVA.</summary>
    Miss = 1,
    /// <summary>Front-end to back-end: add a translation.</summary>
    Update = 2,
    /// <summary>Front-end to back-end: drop translations in a range.</summary>
    Invalidate = 3,
    /// <summary>Back-end to front-end: an access was refused.</summary>
    AccessFail = 4,
}

/// <summary>
/// IOTLB_MSG: <c>{u64 iova; u64 size; u64 uaddr; u8 perm; u8 type}</c>, padded to 32 bytes.
/// </summary>
public readonly record struct IotlbMessage(ulong Iova, ulong Size, ulong UserAddr, IotlbPermission Permission, IotlbMessageType Type)
    : IVhostUserPayload<IotlbMessage>
{
    public const int WireSizeBytes = 32;
    public int WireSize => WireSizeBytes;

    public static IotlbMessage Parse(ReadOnlySpan<byte> payload)
    {
        PayloadCheck.Size(payload, WireSizeBytes, "IOTLB message");
        byte perm = payload[24];
        byte type = payload[25];
        if (perm > (byte)IotlbPermission.ReadWrite)
            throw new VhostUserProtocolException($"IOTLB permission {perm} unknown.");
        if (type < (byte)IotlbMessageType.Miss || type > (byte)IotlbMessageType.AccessFail)
            throw new VhostUserProtocolException($"IOTLB message type {type} unknown.");
        return new IotlbMessage(
            BinaryPrimitives.ReadUInt64LittleEndian(payload),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(payload[16..]),
            (IotlbPermission)perm,
            (IotlbMessageType)type);
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, WireSizeBytes, "IOTLB message");
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Iova);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Size);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], UserAddr);
        destination[24] = (byte)Permission;
        destination[25] = (byte)Type;
        destination.Slice(26, 6).Clear();
    }
}
