using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Integration.Tests.Block;
using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Support;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;
using Xunit.Abstractions;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>
/// Two guests behind QEMU's virtual Intel IOMMU (the same setup as the block test,
/// <see cref="IommuGuestTests"/>) ping each other and move a file through our switch with
/// ACCESS_PLATFORM: every ring, TX buffer and RX buffer address is an IOVA, translated through the
/// device IOTLB, filled by misses and cut by the guest's strict-mode invalidations (RX buffers are
/// unmapped by the guest as each frame arrives, so receive is the busy path here).
/// </summary>
public sealed class IommuNetGuestTests(ITestOutputHelper output)
{
    private const int FileKiB = 256;

    [Theory]
    [InlineData(MetadataAccess.Direct)]
    [InlineData(MetadataAccess.Checked)]
    public async Task Two_guests_behind_a_virtual_iommu_ping_and_move_a_file_through_the_switch(MetadataAccess access)
    {
        using var temp = new TempDirectory();
        var kernel = GuestKernel.FindInstalled();
        var initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("net-test.sh"), kernel);
        var sockets = new[] { temp.File("io0.sock"), temp.File("io1.sock") };
        var sw = new NetSwitch();
        var devices = sockets.Select((s, i) => new NetDevice(sw.AddPort($"port{i}"), new NetDeviceOptions { Name = $"port{i}" })).ToArray();
        using var stop = new CancellationTokenSource();
        var misses = new long[2];
        var invalidations = new long[2];
        var threads = devices.Select((device, i) =>
        {
            var server = new BackendServer(device, new BackendOptions { Metadata = access }, NullLogger.Instance);
            server.SessionEnded += session =>
            {
                Interlocked.Add(ref misses[i], session.Queues.Sum(q => q.Counters.IotlbMisses));
                Interlocked.Add(ref invalidations[i], session.Memory.IotlbInvalidations);
            };
            var listening = new ManualResetEventSlim();
            var t = new Thread(() => server.Run(sockets[i], stop.Token, listening.Set)) { IsBackground = true };
            t.Start();
            Assert.True(listening.Wait(TimeSpan.FromSeconds(10)));
            return t;
        }).ToArray();
        GuestRun? received = null, sent = null;
        try
        {
            QemuGuestOptions Guest(string role, int port, string ip, string peer, string mac) => new()
            {
                Kernel = kernel,
                Initramfs = initramfs,
                Name = $"iommu-net-{role}-{access}",
                WorkDirectory = temp.Path,
                ExtraQemuArguments = IommuGuestTests.IommuQemuArguments,
                ExtraKernelArguments = IommuGuestTests.IommuKernelArguments,
                Devices = [new VhostUserNetDevice(sockets[port], mac) { ExtraProperties = [.. IommuGuestTests.IommuDeviceProperties] }],
                Parameters = new Dictionary<string, string> { ["IP"] = ip, ["PEER"] = peer, ["ROLE"] = role, ["KIB"] = FileKiB.ToString() },
                PeerLog = () => string.Join("\n", devices.Select(d => $"{d.Options.Name}: {d.Port.Counters}")),
                Timeout = TimeSpan.FromMinutes(6), // every DMA map and unmap is a round trip to QEMU's main loop
            };
            await using var receiver = QemuGuest.Start(Guest("server", 0, "10.0.0.1", "10.0.0.2", "52:54:00:00:00:31"));
            await using var sender = QemuGuest.Start(Guest("client", 1, "10.0.0.2", "10.0.0.1", "52:54:00:00:00:32"));
            received = (await receiver.WaitAsync()).AssertSucceeded();
            sent = (await sender.WaitAsync()).AssertSucceeded();
        }
        finally
        {
            stop.Cancel();
            foreach (var t in threads) t.Join(TimeSpan.FromSeconds(10));
            output.WriteLine($"metadata {access}: IOTLB misses per port {misses[0]}, {misses[1]}; invalidations per port {invalidations[0]}, {invalidations[1]}");
            foreach (var d in devices) output.WriteLine($"{d.Options.Name}: {d.Port.Counters}");
        }
        Assert.True(int.Parse(received.Single("SV-PING")) > 0, received.Report);
        Assert.True(int.Parse(sent.Single("SV-PING")) > 0, sent.Report);
        var sentFile = sent.Tagged("SV-SENT").Single();
        Assert.Equal((FileKiB * 1024).ToString(), sentFile[1]);
        Assert.Equal(sentFile, received.Tagged("SV-RECEIVED").Single());
        // Both ports really translated through their IOTLB: they missed and asked QEMU, and dropped
        // what the guests unmapped.
        Assert.All(misses, n => Assert.True(n > 0, "a port reported no IOTLB misses: ACCESS_PLATFORM was not in use"));
        Assert.All(invalidations, n => Assert.True(n > 0, "a port saw no IOTLB invalidations"));
        foreach (var d in devices) d.Dispose();
    }
}
