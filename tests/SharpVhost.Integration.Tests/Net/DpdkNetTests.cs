using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>
/// DPDK 22.11 testpmd against our net code, both ways: its net_virtio_user frontend sends to and
/// receives from our backend, and our frontend library sends to and receives from its net_vhost
/// backend. Packet counts must match on both sides. Bounded in time; no timing assertions.
/// </summary>
public sealed class DpdkNetTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("sharpvhost-dpdk-").FullName;
    private string Socket => Path.Combine(_dir, "net.sock");

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>Our backend serving <paramref name="device"/> on <see cref="Socket"/> until disposed.</summary>
    private sealed class Backend : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _thread;
        public NetDevice Device { get; }

        public Backend(NetDevice device, string socket, MetadataAccess access)
        {
            Device = device;
            var server = new BackendServer(device, new BackendOptions { Metadata = access }, NullLogger.Instance);
            using var listening = new ManualResetEventSlim();
            _thread = new Thread(() => server.Run(socket, _stop.Token, listening.Set)) { IsBackground = true, Name = "net-backend" };
            _thread.Start();
            if (!listening.Wait(TimeSpan.FromSeconds(10))) throw new TimeoutException("backend did not listen");
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join(TimeSpan.FromSeconds(10));
            Device.Dispose();
        }
    }

    private static async Task WaitStable(Func<long> counter)
    {
        // After testpmd stopped, the count is final once the stop messages were handled (the transmit
        // worker finishes its last frames before GET_VRING_BASE is answered): wait for it to settle.
        long last = -1;
        for (int i = 0; i < 50 && counter() != last; i++)
        {
            last = counter();
            await Task.Delay(100);
        }
    }

    [Theory]
    [InlineData(MetadataAccess.Direct, false)]
    [InlineData(MetadataAccess.Checked, false)]
    [InlineData(MetadataAccess.Direct, true)]
    [InlineData(MetadataAccess.Checked, true)]
    public async Task Testpmd_virtio_user_sends_to_our_sink(MetadataAccess access, bool packed)
    {
        using var backend = new Backend(new NetDevice(new SinkEndpoint(), new NetDeviceOptions()), Socket, access);
        await using var testpmd = Testpmd.Start($"net_virtio_user0,path={Socket},queues=1,packed_vq={(packed ? 1 : 0)}", "txonly");
        var counters = backend.Device.Port.Counters;
        await testpmd.WaitUntilAsync(_ => Interlocked.Read(ref counters.TxFrames) >= 100_000, Patience, "100000 frames at our sink");
        var (_, sent) = await testpmd.StopAsync();
        await WaitStable(() => Interlocked.Read(ref counters.TxFrames));
        Assert.True(sent >= 100_000, testpmd.Output);
        // Exact: testpmd counts a frame as sent once it is in the ring, and right after its last burst it
        // disables and stops the ring; our transmit queue finishes what was made available before that.
        long counted = Interlocked.Read(ref counters.TxFrames);
        Assert.Equal(sent, counted);
        Assert.Equal(0, counters.TxDrops);
    }

    [Theory]
    [InlineData(MetadataAccess.Direct, false)]
    [InlineData(MetadataAccess.Checked, false)]
    [InlineData(MetadataAccess.Direct, true)]
    [InlineData(MetadataAccess.Checked, true)]
    public async Task Our_source_sends_to_testpmd_virtio_user(MetadataAccess access, bool packed)
    {
        const long count = 200_000;
        using var backend = new Backend(new NetDevice(new SourceEndpoint(64, count), new NetDeviceOptions()), Socket, access);
        await using var testpmd = Testpmd.Start($"net_virtio_user0,path={Socket},queues=1,packed_vq={(packed ? 1 : 0)}", "rxonly");
        await testpmd.WaitUntilAsync(c => c.Rx >= count, Patience, $"{count} frames received by testpmd");
        // The port's own counter, not the forwarding statistics: testpmd flushes (receives and
        // discards) what is already waiting before it starts forwarding, and our source fills the ring at once.
        var (received, _) = testpmd.Latest();
        await testpmd.StopAsync();
        Assert.Equal(count, received);
        Assert.Equal(count, Interlocked.Read(ref backend.Device.Port.Counters.RxFrames));
    }

    [Fact]
    public async Task Our_frontend_exchanges_frames_with_testpmd_net_vhost()
    {
        const int count = 20_000;
        const int window = 128; // frames in flight: fewer than our receive buffers, so the vhost side never drops
        await using var testpmd = Testpmd.Start($"net_vhost0,iface={Socket},queues=1", "macswap", "--port-topology=loop");
        using var client = NetClient.Connect(Socket, timeout: Patience);
        var a = MacAddress.Parse("02:00:00:00:00:0a");
        var b = MacAddress.Parse("02:00:00:00:00:0b");
        var frame = new byte[128];
        b.Write(frame);
        a.Write(frame.AsSpan(6));
        frame[12] = 0x88; frame[13] = 0xB5;
        var buffer = new byte[2048];
        int sent = 0, received = 0;
        var deadline = DateTime.UtcNow + Patience;
        while (received < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"only {received} of {count} frames came back ({sent} sent):\n{testpmd.Output}");
            while (sent < count && sent - received < window)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(14), sent);
                if (!client.TrySend(frame, publish: false)) break;
                sent++;
            }
            client.Flush();
            int n = client.Receive(buffer, TimeSpan.FromMilliseconds(200));
            while (n > 0)
            {
                Assert.Equal(frame.Length, n);
                Assert.Equal(a, MacAddress.Read(buffer)); // macswap: back to the sender
                Assert.Equal(received, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(buffer.AsSpan(14)));
                received++;
                n = client.TryReceive(buffer);
            }
        }
        var (rx, tx) = await testpmd.StopAsync();
        Assert.Equal(count, rx);
        Assert.Equal(count, tx);
        Assert.Equal(count, client.SentFrames);
        Assert.Equal(count, client.ReceivedFrames);
    }
}
