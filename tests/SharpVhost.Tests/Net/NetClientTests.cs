using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Net;

/// <summary>Our net frontend against our net backend over a real Unix socket, in one process.</summary>
public class NetClientTests
{
    private sealed class Served : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _thread;
        private readonly string _dir = Directory.CreateTempSubdirectory("sharpvhost-net-").FullName;
        public string Socket => Path.Combine(_dir, "net.sock");
        public NetDevice Device { get; }

        public Served(NetDevice device, MetadataAccess access = MetadataAccess.Direct)
        {
            Device = device;
            var server = new BackendServer(device, new BackendOptions { Metadata = access }, NullLogger.Instance);
            using var listening = new ManualResetEventSlim();
            _thread = new Thread(() => server.Run(Socket, _stop.Token, listening.Set)) { IsBackground = true };
            _thread.Start();
            Assert.True(listening.Wait(TimeSpan.FromSeconds(10)));
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join(TimeSpan.FromSeconds(10));
            Device.Dispose();
            Directory.Delete(_dir, true);
        }
    }

    [Theory]
    [InlineData(MetadataAccess.Direct, true)]
    [InlineData(MetadataAccess.Checked, false)]
    public void Echo_returns_every_frame(MetadataAccess access, bool mergeable)
    {
        using var served = new Served(new NetDevice(new EchoEndpoint(), new NetDeviceOptions()), access);
        using var client = NetClient.Connect(served.Socket, new NetClientOptions { MergeableRxBuffers = mergeable });
        Assert.Equal(mergeable, client.Mergeable);
        var buffer = new byte[2048];
        const int count = 2000;
        int received = 0;
        for (int i = 0; i < count; i++)
        {
            Assert.True(client.Send(Frames.Ethernet(Frames.B, Frames.A, 60 + i % 1400, tag: i), TimeSpan.FromSeconds(10)));
            int n;
            while ((n = client.TryReceive(buffer)) > 0) Check(n);
            // Keep fewer frames in flight than the receive ring holds, so that none is dropped for want of buffers.
            while (i + 1 - received >= 128)
            {
                n = client.Receive(buffer, TimeSpan.FromSeconds(10));
                Assert.True(n > 0, $"only {received} of {i + 1} frames came back: {served.Device.Port.Counters}");
                Check(n);
            }
        }
        while (received < count)
        {
            int n = client.Receive(buffer, TimeSpan.FromSeconds(10));
            Assert.True(n > 0, $"only {received} of {count} frames came back: {served.Device.Port.Counters}");
            Check(n);
        }
        Assert.Equal(count, served.Device.Port.Counters.TxFrames);
        Assert.Equal(count, served.Device.Port.Counters.RxFrames);

        void Check(int n)
        {
            Assert.Equal(60 + received % 1400, n);
            Assert.Equal(Frames.A, MacAddress.Read(buffer));
            Assert.Equal(received, Frames.Tag(buffer));
            received++;
        }
    }

    [Fact]
    public void Source_frames_arrive_in_sequence()
    {
        using var served = new Served(new NetDevice(new SourceEndpoint(256, count: 5000), new NetDeviceOptions()));
        using var client = NetClient.Connect(served.Socket);
        var buffer = new byte[2048];
        for (long i = 0; i < 5000; i++)
        {
            int n = client.Receive(buffer, TimeSpan.FromSeconds(10));
            Assert.Equal(256, n);
            Assert.Equal(i, System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(buffer.AsSpan(16)));
        }
    }

    [Fact]
    public void Two_clients_talk_through_the_switch()
    {
        var sw = new NetSwitch();
        using var a = new Served(new NetDevice(sw.AddPort("a"), new NetDeviceOptions()));
        using var b = new Served(new NetDevice(sw.AddPort("b"), new NetDeviceOptions()));
        using var ca = NetClient.Connect(a.Socket);
        using var cb = NetClient.Connect(b.Socket);
        var buffer = new byte[2048];
        Assert.True(ca.Send(Frames.Ethernet(MacAddress.Broadcast, Frames.A, 60, tag: 1), TimeSpan.FromSeconds(5)));
        Assert.Equal(60, cb.Receive(buffer, TimeSpan.FromSeconds(10)));
        Assert.Equal(1, Frames.Tag(buffer));
        Assert.True(cb.Send(Frames.Ethernet(Frames.A, Frames.B, 100, tag: 2), TimeSpan.FromSeconds(5)));
        Assert.Equal(100, ca.Receive(buffer, TimeSpan.FromSeconds(10)));
        Assert.Equal(2, Frames.Tag(buffer));
        Assert.Equal(1, sw.Ports[1].Unicast);
    }

    /// <summary>
    /// DPDK testpmd's stop, over the wire: its last burst is made available (kicked, but our worker has
    /// not run since; here it is never kicked at all), then SET_VRING_ENABLE 0 and GET_VRING_BASE follow
    /// at once. Every frame made available before must be counted, and the base must cover it.
    /// </summary>
    [Theory]
    [InlineData(false, MetadataAccess.Direct)]
    [InlineData(false, MetadataAccess.Checked)]
    [InlineData(true, MetadataAccess.Direct)]
    [InlineData(true, MetadataAccess.Checked)]
    public void Frames_made_available_before_the_transmit_ring_stops_are_all_counted(bool packed, MetadataAccess access)
    {
        const int burst = 200, frameLength = 64;
        using var served = new Served(new NetDevice(new SinkEndpoint(), new NetDeviceOptions()), access);
        using var session = FrontendSession.Connect(served.Socket);
        session.NegotiateFeatures(VirtioFeatureBits.Bit(VirtioFeatureBits.Version1) | VirtioFeatureBits.Bit(VirtioFeatureBits.RingEventIdx)
            | (packed ? VirtioFeatureBits.Bit(VirtioFeatureBits.RingPacked) : 0));
        var memory = session.ShareMemory(1 << 20);
        using var rx = session.StartQueue(0, 256);
        using var tx = session.StartQueue(1, 256);
        const int slot = VirtioNet.HeaderSize + frameLength;
        ulong buffers = memory.Allocate((ulong)(burst + 1) * slot, 4096);
        var counters = served.Device.Port.Counters;

        Add(0);
        tx.Publish(); // with a kick
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (Interlocked.Read(ref counters.TxFrames) < 1)
        {
            Assert.True(DateTime.UtcNow < deadline, "the first frame was never counted");
            Thread.Sleep(5);
        }
        Thread.Sleep(50); // the worker goes back to sleep
        for (int i = 1; i <= burst; i++) Add(i);
        tx.Ring.Publish(); // no kick
        session.EnableQueue(1, false);
        uint vringBase = session.StopQueue(1);

        Assert.Equal(burst + 1, Interlocked.Read(ref counters.TxFrames));
        Assert.Equal((uint)(burst + 1), vringBase & 0x7fff);

        void Add(int i)
        {
            ulong address = buffers + (ulong)(i * slot);
            var span = memory.GetSpan(address, slot);
            span[..VirtioNet.HeaderSize].Clear();
            Frames.Ethernet(Frames.B, Frames.A, frameLength, tag: i).CopyTo(span[VirtioNet.HeaderSize..]);
            Span<DriverBuffer> b = [new DriverBuffer(address, slot, false)];
            Assert.True(tx.Ring.TryAdd(b, out _));
        }
    }
}
