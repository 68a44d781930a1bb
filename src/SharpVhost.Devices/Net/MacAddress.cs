using System.Buffers.Binary;
using System.Globalization;

namespace SharpVhost.Devices.Net;

/// <summary>An Ethernet address packed into the low 48 bits of a ulong (first octet most significant), so it can key a table without allocating.</summary>
public readonly record struct MacAddress(ulong Value)
{
    public static readonly MacAddress Broadcast = new(0xFFFF_FFFF_FFFFul);

    /// <summary>Group bit of the first octet: broadcast and multicast.</summary>
    public bool IsMulticast => (Value & 0x0100_0000_0000ul) != 0;

    public static MacAddress Read(ReadOnlySpan<byte> b)
        => new(((ulong)BinaryPrimitives.ReadUInt16BigEndian(b) << 32) | BinaryPrimitives.ReadUInt32BigEndian(b[2..]));

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)(Value >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(b[2..], (uint)Value);
    }

    public static MacAddress Parse(string text)
    {
        var parts = text.Split(':', '-');
        if (parts.Length != 6) throw new FormatException($"'{text}' is not a MAC address (six hex octets)");
        ulong v = 0;
        foreach (var p in parts) v = (v << 8) | byte.Parse(p, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return new MacAddress(v);
    }

    /// <summary>A random locally administered unicast address (52:54:00 is QEMU's; we use 02:xx, the "local" bit).</summary>
    public static MacAddress RandomLocal()
    {
        Span<byte> b = stackalloc byte[6];
        Random.Shared.NextBytes(b);
        b[0] = (byte)((b[0] & 0xFC) | 0x02);
        return Read(b);
    }

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[6];
        Write(b);
        return $"{b[0]:x2}:{b[1]:x2}:{b[2]:x2}:{b[3]:x2}:{b[4]:x2}:{b[5]:x2}";
    }
}
