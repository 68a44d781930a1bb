using System.Buffers.Binary;

namespace SharpVhost.Devices.Net;

/// <summary>The virtio-net config space, laid out as the start of <c>struct virtio_net_config</c>.</summary>
public static class NetConfig
{
    public const int Size = 12;
    public const int MacOffset = 0, StatusOffset = 6, MaxQueuePairsOffset = 8, MtuOffset = 10;

    public static byte[] Build(MacAddress mac, ushort status, int maxQueuePairs, int mtu)
    {
        var c = new byte[Size];
        mac.Write(c.AsSpan(MacOffset));
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(StatusOffset), status);
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(MaxQueuePairsOffset), (ushort)maxQueuePairs);
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(MtuOffset), (ushort)mtu);
        return c;
    }
}
