using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Support;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>
/// virtio-net-pci with two queue pairs on a vhost-user netdev: QEMU runs one vhost device per queue
/// pair on the same connection (each sends the memory table again) and turns pairs on with
/// SET_VRING_ENABLE; the guest spreads its traffic over them.
/// </summary>
public sealed record MultiQueueNetDevice(string SocketPath, string Mac, int QueuePairs) : VhostUserDevice(SocketPath)
{
    public override IEnumerable<string> QemuArguments(int index) =>
    [
        "-chardev", Chardev($"mqchr{index}"),
        "-netdev", $"vhost-user,id=mqnet{index},chardev=mqchr{index},queues={QueuePairs}",
        "-device", DeviceProperties($"virtio-net-pci,netdev=mqnet{index},mac={Mac},vectors=0,mq=on"),
    ];
}

/// <summary>Two guests with two vCPUs and two queue pairs each, joined by our switch, ping and move a file.</summary>
public sealed class MultiQueueNetGuestTests
{
    private const int FileKiB = 1024;

    [Fact]
    public async Task Two_multiqueue_guests_ping_each_other_and_move_a_file()
    {
        using var temp = new TempDirectory();
        var kernel = GuestKernel.FindInstalled();
        var initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("net-test.sh"), kernel);
        var sockets = new[] { temp.File("mq0.sock"), temp.File("mq1.sock") };
        var sw = new NetSwitch();
        var devices = sockets.Select((s, i) => new NetDevice(sw.AddPort($"port{i}"), new NetDeviceOptions { Name = $"port{i}", QueuePairs = 2 })).ToArray();
        using var stop = new CancellationTokenSource();
        var startedQueues = new int[2];
        var threads = devices.Select((device, i) =>
        {
            var server = new BackendServer(device, new BackendOptions { Metadata = MetadataAccess.Checked }, NullLogger.Instance);
            server.SessionEnded += session => Interlocked.Add(ref startedQueues[i], session.Queues.Count(q => q.Counters.CheckedBinds > 0));
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
                Name = $"mq-{role}",
                Cpus = 2,
                WorkDirectory = temp.Path,
                Devices = [new MultiQueueNetDevice(sockets[port], mac, 2)],
                Parameters = new Dictionary<string, string> { ["IP"] = ip, ["PEER"] = peer, ["ROLE"] = role, ["KIB"] = FileKiB.ToString() },
                PeerLog = () => string.Join("\n", devices.Select(d => $"{d.Options.Name}: {d.Port.Counters}")),
            };
            await using var receiver = QemuGuest.Start(Guest("server", 0, "10.0.0.1", "10.0.0.2", "52:54:00:00:00:11"));
            await using var sender = QemuGuest.Start(Guest("client", 1, "10.0.0.2", "10.0.0.1", "52:54:00:00:00:12"));
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
        // A guest with two vCPUs turns both queue pairs on: all four queues of each port ran.
        Assert.Equal([4, 4], startedQueues);
        foreach (var d in devices) d.Dispose();
    }
}
