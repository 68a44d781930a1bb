using System.Buffers.Binary;
using SharpVhost.Devices.Net;

namespace SharpVhost.Tests.Net;

/// <summary>Builds test frames and the virtio-net headers in front of them.</summary>
internal static class Frames
{
    public static readonly MacAddress A = MacAddress.Parse("02:00:00:00:00:0a");
    public static readonly MacAddress B = MacAddress.Parse("02:00:00:00:00:0b");
    public static readonly MacAddress C = MacAddress.Parse("02:00:00:00:00:0c");

    /// <summary>An Ethernet frame of <paramref name="length"/> bytes whose payload encodes <paramref name="tag"/>.</summary>
    public static byte[] Ethernet(MacAddress destination, MacAddress source, int length = 64, int tag = 0)
    {
        var f = new byte[length];
        destination.Write(f);
        source.Write(f.AsSpan(6));
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x88B5);
        for (int i = 14; i < length; i++) f[i] = (byte)(i + tag);
        if (length >= 18) BinaryPrimitives.WriteInt32BigEndian(f.AsSpan(14), tag);
        return f;
    }

    public static int Tag(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadInt32BigEndian(frame[14..]);

    /// <summary>The frame behind a virtio-net header (all zeroes unless given).</summary>
    public static byte[] WithHeader(byte[] frame, VirtioNetHeader header = default, int headerSize = VirtioNet.HeaderSize)
    {
        var b = new byte[headerSize + frame.Length];
        header.Write(b, headerSize);
        frame.CopyTo(b, headerSize);
        return b;
    }
}

/// <summary>A clock the test moves by hand.</summary>
internal sealed class ManualClock : TimeProvider
{
    private long _ticks;
    public override long TimestampFrequency => 1000;
    public override long GetTimestamp() => Interlocked.Read(ref _ticks);
    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, (long)by.TotalMilliseconds);
}
