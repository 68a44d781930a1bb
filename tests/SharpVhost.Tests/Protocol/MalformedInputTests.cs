using SharpVhost.Interop;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;

namespace SharpVhost.Tests.Protocol;

/// <summary>A hostile front-end's messages: each gets a clear exception and leaves no fd behind.</summary>
[Collection(FdCountingCollection.Name)]
public class MalformedInputTests
{
    private const uint V1 = 1;

    private static byte[] Raw(FrontEndRequest request, uint flags, ReadOnlySpan<byte> payload) =>
        FdTestSupport.RawMessage((uint)request, flags, (uint)payload.Length, payload);

    private static byte[] U64(ulong v) => BitConverter.GetBytes(v);

    /// <summary>Sends <paramref name="bytes"/> with <paramref name="fdCount"/> fds of /dev/null to a
    /// back-end channel and returns what its Receive throws; optionally checks the stream stays usable.</summary>
    private static Exception ReceiveFails(byte[] bytes, int fdCount, bool closeAfter = false, bool checkInSync = false)
    {
        Exception? caught = null;
        FdTestSupport.AssertNoFdLeak(() =>
        {
            var (front, back) = FdTestSupport.Pair();
            using var channel = new VhostUserChannel(back, VhostUserRole.BackEnd);
            using (front)
            {
                var handles = Enumerable.Range(0, fdCount).Select(_ => File.OpenHandle("/dev/null")).ToArray();
                UnixSockets.SendWithFds(front, bytes, handles.Select(h => h.Fd()).ToArray());
                foreach (var h in handles) h.Dispose();
                if (closeAfter) front.Shutdown(System.Net.Sockets.SocketShutdown.Send);

                caught = Record.Exception(() => channel.Receive()?.Dispose());

                if (checkInSync)
                {
                    UnixSockets.SendWithFds(front, Raw(FrontEndRequest.GetFeatures, V1, []), []);
                    using var next = channel.Receive();
                    Assert.NotNull(next);
                    Assert.Equal(FrontEndRequest.GetFeatures, next.FrontEndRequest);
                }
            }
        });
        Assert.NotNull(caught);
        Assert.IsAssignableFrom<VhostUserProtocolException>(caught);
        return caught!;
    }

    [Fact]
    public void TruncatedHeader() =>
        Assert.IsNotType<VhostUserMessageRejectedException>(ReceiveFails([1, 0, 0, 0, 1], 0, closeAfter: true));

    [Fact]
    public void TruncatedHeaderWithFds() => ReceiveFails([5, 0, 0], 2, closeAfter: true);

    [Fact]
    public void TruncatedPayloadWithFds() =>
        ReceiveFails(FdTestSupport.RawMessage((uint)FrontEndRequest.SetMemTable, V1, 72, new byte[10]), 2, closeAfter: true);

    [Fact] public void UnknownVersion() => ReceiveFails(Raw(FrontEndRequest.GetFeatures, 2, []), 0);

    [Fact] public void UnknownFlagBits() => ReceiveFails(Raw(FrontEndRequest.GetFeatures, V1 | 0x10, []), 1);

    [Fact] public void ReplyBitOnARequest() => ReceiveFails(Raw(FrontEndRequest.GetFeatures, V1 | 4, []), 0);

    [Fact]
    public void OversizedPayload() =>
        ReceiveFails(FdTestSupport.RawMessage((uint)FrontEndRequest.SetConfig, V1, 1 << 20, []), 1);

    [Fact]
    public void WrongSizeForRequestIsRejectedAndStreamStaysInStep()
    {
        var e = ReceiveFails(Raw(FrontEndRequest.SetVringNum, V1 | 8, new byte[4]), 0, checkInSync: true);
        var rejected = Assert.IsType<VhostUserMessageRejectedException>(e);
        Assert.True(rejected.Header.NeedReply);
        Assert.Equal((uint)FrontEndRequest.SetVringNum, rejected.Header.Request);
    }

    [Fact]
    public void PayloadOnAPayloadlessRequest() =>
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.GetFeatures, V1, U64(0)), 0, checkInSync: true));

    [Fact]
    public void ExtraFdOnARequestWithoutFds() =>
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.SetFeatures, V1, U64(1)), 1, checkInSync: true));

    [Fact]
    public void KickWithoutFdAndWithoutNoFdBit() =>
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.SetVringKick, V1, U64(0)), 0, checkInSync: true));

    [Fact]
    public void KickWithFdAndNoFdBit() =>
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.SetVringCall, V1, U64(0x100)), 1, checkInSync: true));

    [Fact]
    public void KickWithReservedBits() =>
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.SetVringKick, V1, U64(0x200)), 1, checkInSync: true));

    [Fact]
    public void MemTableWithFewerFdsThanRegions()
    {
        var table = new MemoryTable([new MemoryRegion(0, 4096, 0x1000, 0), new MemoryRegion(4096, 4096, 0x2000, 0)]);
        var bytes = new byte[table.WireSize];
        table.Write(bytes);
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.SetMemTable, V1, bytes), 1, checkInSync: true));
    }

    [Fact]
    public void MemTableWithTooManyFds()
    {
        var table = new MemoryTable([new MemoryRegion(0, 4096, 0x1000, 0)]);
        var bytes = new byte[table.WireSize];
        table.Write(bytes);
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.SetMemTable, V1, bytes), 12, checkInSync: true));
    }

    [Fact]
    public void MemTableRegionCountDisagreesWithSize()
    {
        var bytes = new byte[8 + 32];
        bytes[0] = 3;
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.SetMemTable, V1, bytes), 3, checkInSync: true));
    }

    [Fact]
    public void ConfigSizeFieldDisagreesWithPayload()
    {
        var bytes = new byte[12 + 8];
        bytes[4] = 16;
        Assert.IsType<VhostUserMessageRejectedException>(ReceiveFails(Raw(FrontEndRequest.GetConfig, V1, bytes), 0, checkInSync: true));
    }

    [Fact]
    public void RemMemRegToleratesOneStrayFdAndClosesIt()
    {
        FdTestSupport.AssertNoFdLeak(() =>
        {
            var (front, back) = FdTestSupport.Pair();
            using var channel = new VhostUserChannel(back, VhostUserRole.BackEnd);
            using (front)
            using (var devNull = File.OpenHandle("/dev/null"))
            {
                var region = new SingleMemoryRegion(new MemoryRegion(0, 4096, 0x1000, 0));
                var bytes = new byte[region.WireSize];
                region.Write(bytes);
                UnixSockets.SendWithFds(front, Raw(FrontEndRequest.RemMemReg, V1, bytes), [devNull.Fd()]);
                using var msg = channel.Receive();
                Assert.NotNull(msg);
                Assert.Equal(1, msg.Fds.Count);
                Assert.Equal(region, msg.ParsePayload<SingleMemoryRegion>());
            }
        });
    }

    [Fact]
    public void UnknownRequestIsDeliveredForTheSessionToRefuse()
    {
        var (front, back) = FdTestSupport.Pair();
        using var channel = new VhostUserChannel(back, VhostUserRole.BackEnd);
        using (front)
        {
            UnixSockets.SendWithFds(front, FdTestSupport.RawMessage(200, V1 | 8, 3, [1, 2, 3]), []);
            using var msg = channel.Receive();
            Assert.NotNull(msg);
            Assert.False(msg.IsKnown);
            Assert.True(channel.Acknowledge(msg, success: false));
            var reply = new byte[20];
            Assert.Equal(20, front.Receive(reply));
            Assert.Equal(200u, BitConverter.ToUInt32(reply, 0));
            Assert.Equal(V1 | 4, BitConverter.ToUInt32(reply, 4));
            Assert.Equal(1UL, BitConverter.ToUInt64(reply, 12));
        }
    }

    [Fact]
    public void CleanCloseBetweenMessagesIsNotAnError()
    {
        var (front, back) = FdTestSupport.Pair();
        using var channel = new VhostUserChannel(back, VhostUserRole.BackEnd);
        front.Dispose();
        Assert.Null(channel.Receive());
    }
}
