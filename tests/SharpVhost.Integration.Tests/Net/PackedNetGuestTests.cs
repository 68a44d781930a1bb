using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Support;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>Two guests whose virtio-net devices use packed rings (packed=on) ping and move a file through our switch.</summary>
public sealed class PackedNetGuestTests
{
    private const int FileKiB = 512;

    [Theory]
    [InlineData(MetadataAccess.Direct)]
    [InlineData(MetadataAccess.Checked)]
    public async Task Two_packed_ring_guests_ping_each_other_and_move_a_file(MetadataAccess access)
    {
        using var temp = new TempDirectory();
        var kernel = GuestKernel.FindInstalled();
        var initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("net-test.sh"), kernel);
        var sockets = new[] { temp.File("pk0.sock"), temp.File("pk1.sock") };
        var sw = new NetSwitch();
        var devices = sockets.Select((s, i) => new NetDevice(sw.AddPort($"port{i}"), new NetDeviceOptions { Name = $"port{i}" })).ToArray();
        using var stop = new CancellationTokenSource();
        var packedQueues = new int[2];
        var threads = devices.Select((device, i) =>
        {
            var server = new BackendServer(device, new BackendOptions { Metadata = access }, NullLogger.Instance);
            server.SessionEnded += session => Interlocked.Add(ref packedQueues[i], session.Queues.Count(q => q is PackedQueue && q.Counters.Requests > 0));
            var listening = new ManualResetEventSlim();
            var t = new Thread(() => server.Run(sockets[i], stop.Token, listening.Set)) { IsBackground = true };
            t.Start();
            Assert.True(listening.Wait(TimeSpan.FromSeconds(10)));
            return t;
        }).ToArray();
        try
        {
            QemuGuestOptions Guest(string role, int port, string ip, string peer, string mac) => new()
            {
                Kernel = kernel,
                Initramfs = initramfs,
                Name = $"packed-{role}",
                WorkDirectory = temp.Path,
                Devices = [new VhostUserNetDevice(sockets[port], mac) { ExtraProperties = ["packed=on"] }],
                Parameters = new Dictionary<string, string> { ["IP"] = ip, ["PEER"] = peer, ["ROLE"] = role, ["KIB"] = FileKiB.ToString() },
                PeerLog = () => string.Join("\n", devices.Select(d => $"{d.Options.Name}: {d.Port.Counters}")),
            };
            await using var receiver = QemuGuest.Start(Guest("server", 0, "10.0.0.1", "10.0.0.2", "52:54:00:00:00:21"));
            await using var sender = QemuGuest.Start(Guest("client", 1, "10.0.0.2", "10.0.0.1", "52:54:00:00:00:22"));
            var received = (await receiver.WaitAsync()).AssertSucceeded();
            var sent = (await sender.WaitAsync()).AssertSucceeded();
            Assert.True(int.Parse(received.Single("SV-PING")) > 0, received.Report);
            Assert.True(int.Parse(sent.Single("SV-PING")) > 0, sent.Report);
            var sentFile = sent.Tagged("SV-SENT").Single();
            Assert.Equal((FileKiB * 1024).ToString(), sentFile[1]);
            Assert.Equal(sentFile, received.Tagged("SV-RECEIVED").Single());
        }
        finally
        {
            stop.Cancel();
            foreach (var t in threads) t.Join(TimeSpan.FromSeconds(10));
        }
        Assert.Equal([2, 2], packedQueues); // both queues of both ports ran as packed rings
        foreach (var d in devices) d.Dispose();
    }
}
