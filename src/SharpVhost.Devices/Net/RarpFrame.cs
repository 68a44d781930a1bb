using System.Buffers.Binary;

namespace SharpVhost.Devices.Net;

/// <summary>A reverse-ARP "request reverse" broadcast announcing a MAC address (RFC 903), padded to the Ethernet minimum.</summary>
public static class RarpFrame
{
    public const int Length = 60;
    public const ushort EtherType = 0x8035;

    public static void Build(Span<byte> frame, MacAddress mac)
    {
        frame[..Length].Clear();
        MacAddress.Broadcast.Write(frame);
        mac.Write(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherType);
        BinaryPrimitives.WriteUInt16BigEndian(frame[14..], 1);      // hardware: Ethernet
        BinaryPrimitives.WriteUInt16BigEndian(frame[16..], 0x0800); // protocol: IPv4
        frame[18] = 6;                                               // hardware address length
        frame[19] = 4;                                               // protocol address length
        BinaryPrimitives.WriteUInt16BigEndian(frame[20..], 3);      // opcode: request reverse
        mac.Write(frame[22..]);                                      // sender hardware address
        mac.Write(frame[32..]);                                      // target hardware address
    }
}
