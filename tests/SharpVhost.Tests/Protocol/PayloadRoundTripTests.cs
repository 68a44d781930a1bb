using System.Collections.Immutable;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.Tests.Protocol;

public class PayloadRoundTripTests
{
    private static T RoundTrip<T>(T value, int expectedSize) where T : struct, IVhostUserPayload<T>
    {
        Assert.Equal(expectedSize, value.WireSize);
        var bytes = new byte[value.WireSize];
        value.Write(bytes);
        var parsed = T.Parse(bytes);
        Assert.Equal(value, parsed);
        // One byte short and one byte long are both refused.
        Assert.Throws<VhostUserProtocolException>(() => T.Parse(bytes.AsSpan(0, bytes.Length - 1)));
        var longer = new byte[bytes.Length + 1];
        bytes.CopyTo(longer, 0);
        Assert.Throws<VhostUserProtocolException>(() => T.Parse(longer));
        return parsed;
    }

    [Fact] public void U64() => RoundTrip(new U64Payload(0x0123_4567_89ab_cdef), 8);

    [Fact]
    public void VringFdWithAndWithoutFd()
    {
        RoundTrip(new VringFd(7, NoFd: false), 8);
        RoundTrip(new VringFd(255, NoFd: true), 8);
        Assert.Equal(0x105UL, new VringFd(5, true).ToU64());
        Assert.Throws<VhostUserProtocolException>(() => VringFd.FromU64(1UL << 9));
    }

    [Fact] public void VringState() => RoundTrip(new VringState(3, 256), 8);

    [Fact]
    public void VringAddress()
    {
        RoundTrip(new VringAddress(1, VringAddressFlags.Log, 0x1000, 0x2000, 0x3000, 0x4000), 40);
        var bytes = new byte[40];
        bytes[4] = 2; // unknown flag
        Assert.Throws<VhostUserProtocolException>(() => SharpVhost.VhostUser.Protocol.VringAddress.Parse(bytes));
    }

    [Fact]
    public void MemoryTable()
    {
        var table = new MemoryTable([
            new MemoryRegion(0, 0x10000, 0x7f00_0000_0000, 0),
            new MemoryRegion(0x100000, 0x20000, 0x7f00_1000_0000, 0x1000)]);
        RoundTrip(table, 8 + 2 * 32);

        // A table padded to all eight slots (the full C struct) is accepted too.
        var full = new byte[8 + 8 * 32];
        table.Write(full);
        Assert.Equal(table, SharpVhost.VhostUser.Protocol.MemoryTable.Parse(full));

        var nine = new byte[8 + 9 * 32];
        nine[0] = 9;
        Assert.Throws<VhostUserProtocolException>(() => SharpVhost.VhostUser.Protocol.MemoryTable.Parse(nine));
        Assert.Throws<VhostUserProtocolException>(() => SharpVhost.VhostUser.Protocol.MemoryTable.Parse(new byte[8]));
    }

    [Fact] public void SingleMemoryRegion() => RoundTrip(new SingleMemoryRegion(new MemoryRegion(1, 2, 3, 4)), 40);

    [Fact] public void Log() => RoundTrip(new LogDescription(0x4000, 0x100), 16);

    [Fact] public void Inflight() => RoundTrip(new InflightDescription(0x8000, 0, 2, 128), 24);

    [Fact]
    public void Config()
    {
        RoundTrip(new ConfigSpace(0, ConfigSpaceFlags.Writable, [1, 2, 3, 4, 5, 6, 7, 8]), 20);
        RoundTrip(new ConfigSpace(4, ConfigSpaceFlags.Migration, []), 12);
        var tooBig = new byte[12 + 257];
        BitConverter.TryWriteBytes(tooBig.AsSpan(4), 257u);
        Assert.Throws<VhostUserProtocolException>(() => ConfigSpace.Parse(tooBig));
        var mismatch = new byte[12 + 4];
        BitConverter.TryWriteBytes(mismatch.AsSpan(4), 8u);
        Assert.Throws<VhostUserProtocolException>(() => ConfigSpace.Parse(mismatch));
    }

    [Fact]
    public void Iotlb()
    {
        RoundTrip(new IotlbMessage(0x1000, 0x2000, 0x7f00_0000_0000, IotlbPermission.ReadWrite, IotlbMessageType.Update), 32);
        var bad = new byte[32];
        bad[25] = 9;
        Assert.Throws<VhostUserProtocolException>(() => IotlbMessage.Parse(bad));
    }

    [Fact]
    public void VringArea()
    {
        RoundTrip(new VringArea(2, NoFd: false, 4096, 8192), 24);
        RoundTrip(new VringArea(2, NoFd: true, 0, 0), 24);
    }

    [Fact]
    public void Header()
    {
        var header = new VhostUserHeader(9, VhostUserHeaderFlags.Version1 | VhostUserHeaderFlags.NeedReply, 40);
        var bytes = new byte[12];
        header.Write(bytes);
        Assert.Equal(header, VhostUserHeader.Read(bytes));
        Assert.Equal(header, VhostUserCodec.DecodeHeader(bytes, expectReply: false));
    }

    [Fact]
    public void EveryKnownFrontEndRequestHasARule()
    {
        foreach (FrontEndRequest request in Enum.GetValues<FrontEndRequest>())
        {
            if (request == FrontEndRequest.None) continue;
            Assert.True(MessageRules.For(VhostUserChannelKind.Main, (uint)request, isReply: false).Known, request.ToString());
        }
        Assert.False(MessageRules.For(VhostUserChannelKind.Main, 999, false).Known);
        _ = ImmutableArray<int>.Empty;
    }
}
