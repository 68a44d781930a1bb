using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;

namespace SharpVhost.Tests.Protocol;

/// <summary>Our front-end helper against a minimal back-end loop, over a real socket pair.</summary>
[Collection(FdCountingCollection.Name)]
public class ChannelTests
{
    private const ulong Features = VhostUserFeatureBits.ProtocolFeatures | (1UL << 32);

    /// <summary>The smallest back-end loop that exercises the API the backend session will use.</summary>
    private static void BackendLoop(VhostUserChannel channel, List<string> log)
    {
        while (channel.Receive() is { } msg)
        {
            using (msg)
            {
                log.Add(msg.FrontEndRequest.ToString());
                switch (msg.FrontEndRequest)
                {
                    case FrontEndRequest.GetFeatures:
                        channel.SendReplyU64(msg, Features);
                        break;
                    case FrontEndRequest.GetProtocolFeatures:
                        channel.SendReplyU64(msg, (ulong)(VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.Config));
                        break;
                    case FrontEndRequest.SetMemTable:
                        var table = msg.ParsePayload<MemoryTable>();
                        for (int i = 0; i < table.Regions.Length; i++)
                        {
                            using var fd = msg.Fds.Take(i);
                            var data = new byte[5];
                            RandomAccess.Read(fd, data, (long)table.Regions[i].MmapOffset);
                            log.Add(System.Text.Encoding.ASCII.GetString(data));
                        }
                        channel.Acknowledge(msg, success: true);
                        break;
                    case FrontEndRequest.GetVringBase:
                        var state = msg.ParsePayload<VringState>();
                        channel.SendReply(msg, new VringState(state.Index, 77));
                        break;
                    case FrontEndRequest.GetConfig:
                        var request = msg.ParsePayload<ConfigSpace>();
                        var config = new byte[request.Data.Length];
                        config.AsSpan().Fill(0xab);
                        channel.SendReply(msg, request with { Data = config });
                        break;
                    case FrontEndRequest.SetVringNum:
                        // Refuse queue sizes that are not powers of two.
                        var num = msg.ParsePayload<VringState>().Num;
                        channel.Acknowledge(msg, success: num != 0 && (num & (num - 1)) == 0);
                        break;
                    default:
                        channel.Acknowledge(msg, success: true);
                        break;
                }
            }
        }
    }

    [Fact]
    public void FrontEndNegotiatesAndPassesMemoryFds()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "....hello");
            FdTestSupport.AssertNoFdLeak(() =>
            {
                var (a, b) = FdTestSupport.Pair();
                var log = new List<string>();
                var backend = new VhostUserChannel(b, VhostUserRole.BackEnd);
                var thread = new Thread(() => BackendLoop(backend, log));
                thread.Start();
                using (var fe = new FrontEndConnection(a))
                using (var file = File.OpenHandle(path))
                {
                    Assert.Equal(Features, fe.GetU64(FrontEndRequest.GetFeatures));
                    fe.SetU64(FrontEndRequest.SetFeatures, Features);
                    var protocol = (VhostUserProtocolFeatures)fe.GetU64(FrontEndRequest.GetProtocolFeatures);
                    fe.SetU64(FrontEndRequest.SetProtocolFeatures, (ulong)protocol);
                    fe.ReplyAck = protocol.HasFlag(VhostUserProtocolFeatures.ReplyAck);

                    fe.Send(FrontEndRequest.SetMemTable,
                        new MemoryTable([new MemoryRegion(0, 4096, 0x7000_0000, 4), new MemoryRegion(4096, 4096, 0x7000_1000, 4)]),
                        [file.Fd(), file.Fd()]);

                    fe.Send(FrontEndRequest.SetVringNum, new VringState(0, 256));
                    var nack = Assert.Throws<VhostUserRequestFailedException>(() => fe.Send(FrontEndRequest.SetVringNum, new VringState(0, 100)));
                    Assert.Equal(1UL, nack.Status);

                    Assert.Equal(new VringState(0, 77), fe.Call<VringState, VringState>(FrontEndRequest.GetVringBase, new VringState(0, 0)));
                    var config = fe.Call<ConfigSpace, ConfigSpace>(FrontEndRequest.GetConfig, new ConfigSpace(0, ConfigSpaceFlags.Writable, new byte[8]));
                    Assert.Equal(Enumerable.Repeat((byte)0xab, 8), config.Data);
                }
                thread.Join();
                backend.Dispose();
                Assert.Equal(["GetFeatures", "SetFeatures", "GetProtocolFeatures", "SetProtocolFeatures", "SetMemTable", "hello", "hello",
                    "SetVringNum", "SetVringNum", "GetVringBase", "GetConfig"], log);
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void MismatchedReplyIdIsAProtocolError()
    {
        var (a, b) = FdTestSupport.Pair();
        using var backend = new VhostUserChannel(b, VhostUserRole.BackEnd);
        using var fe = new FrontEndConnection(a);
        var thread = new Thread(() =>
        {
            using var msg = backend.Receive()!;
            backend.Send((uint)FrontEndRequest.GetQueueNum, VhostUserHeaderFlags.Reply, BitConverter.GetBytes(1UL));
        });
        thread.Start();
        Assert.Throws<VhostUserProtocolException>(() => fe.GetU64(FrontEndRequest.GetFeatures));
        thread.Join();
    }

    [Fact]
    public void BackEndRequestChannelSendsIotlbMissAndWaitsForAck()
    {
        var (frontSide, backSide) = FdTestSupport.Pair();
        using var requests = new BackEndRequestChannel(backSide, replyAck: true);
        using var frontEnd = new VhostUserChannel(frontSide, VhostUserRole.FrontEnd, VhostUserChannelKind.BackendRequests);
        IotlbMessage? seen = null;
        var thread = new Thread(() =>
        {
            using var msg = frontEnd.Receive()!;
            Assert.Equal(BackEndRequest.IotlbMsg, msg.BackEndRequest);
            Assert.True(msg.NeedReply);
            seen = msg.ParsePayload<IotlbMessage>();
            frontEnd.Acknowledge(msg, success: true);
        });
        thread.Start();
        requests.SendIotlbMiss(0x1000, IotlbPermission.ReadOnly);
        thread.Join();
        Assert.Equal(new IotlbMessage(0x1000, 0, 0, IotlbPermission.ReadOnly, IotlbMessageType.Miss), seen);
    }

    [Fact]
    public void BackEndRequestSocketTravelsAsAnFd()
    {
        var (a, b) = FdTestSupport.Pair();
        var (reqFront, reqBack) = FdTestSupport.Pair();
        using var backend = new VhostUserChannel(b, VhostUserRole.BackEnd);
        using var fe = new FrontEndConnection(a);
        using var frontRequests = new VhostUserChannel(reqFront, VhostUserRole.FrontEnd, VhostUserChannelKind.BackendRequests);
        var thread = new Thread(() =>
        {
            using var msg = backend.Receive()!;
            using var channel = new BackEndRequestChannel(msg.Fds.TakeSocket(0), replyAck: false);
            channel.SendConfigChanged();
        });
        thread.Start();
        fe.Send(FrontEndRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [(int)reqBack.SafeHandle.DangerousGetHandle()]);
        reqBack.Dispose();
        using var notice = frontRequests.Receive();
        Assert.Equal(BackEndRequest.ConfigChangeMsg, notice!.BackEndRequest);
        thread.Join();
    }
}

/// <summary>Sockets created the ordinary .NET way, including async accept/connect (which leave the
/// descriptor non-blocking), work with the fd-passing channel.</summary>
public class ListenerSocketTests
{
    [Fact]
    public async Task AsyncAcceptedSocketsCarryMessagesAndFds()
    {
        string path = Path.Combine(Path.GetTempPath(), $"sv-proto-{Guid.NewGuid():N}.sock");
        try
        {
            using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            var accept = listener.AcceptAsync();
            await client.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            var server = await accept;

            using var backend = new VhostUserChannel(server, VhostUserRole.BackEnd);
            using var fe = new FrontEndConnection(client);
            var thread = new Thread(() =>
            {
                while (backend.Receive() is { } msg)
                    using (msg)
                    {
                        if (msg.FrontEndRequest == FrontEndRequest.GetQueueNum) backend.SendReplyU64(msg, 4);
                        else if (msg.FrontEndRequest == FrontEndRequest.SetVringCall) { using var call = msg.Fds.Take(0); }
                    }
            });
            thread.Start();
            using (var devNull = File.OpenHandle("/dev/null"))
                fe.Send(FrontEndRequest.SetVringCall, new VringFd(0, NoFd: false), [(int)devNull.DangerousGetHandle()]);
            Assert.Equal(4UL, fe.GetU64(FrontEndRequest.GetQueueNum));
            fe.Channel.Shutdown();
            thread.Join();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ReceiveTimeoutApplies()
    {
        var (a, b) = SharpVhost.Interop.UnixSockets.CreatePair();
        using (a)
        using (var channel = new VhostUserChannel(b, VhostUserRole.FrontEnd))
        {
            b.ReceiveTimeout = 200;
            var e = Assert.Throws<System.Net.Sockets.SocketException>(() => channel.Receive());
            Assert.Equal(System.Net.Sockets.SocketError.TimedOut, e.SocketErrorCode);
        }
    }

    [Fact]
    public void ShutdownWakesABlockedReceive()
    {
        var (a, b) = SharpVhost.Interop.UnixSockets.CreatePair();
        using (a)
        using (var channel = new VhostUserChannel(b, VhostUserRole.BackEnd))
        {
            VhostUserMessage? result = null;
            var thread = new Thread(() => result = channel.Receive());
            thread.Start();
            Thread.Sleep(100);
            channel.Shutdown();
            Assert.True(thread.Join(5000));
            Assert.Null(result);
        }
    }
}
