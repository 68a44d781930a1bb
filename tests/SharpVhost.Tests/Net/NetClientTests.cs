using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.VhostUser.Backend;
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
}
