using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Support;
using SharpVhost.VhostUser.Backend;
using static SharpVhost.Integration.Tests.Support.HostNetwork;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>
/// A Linux guest on a port whose endpoint is a TAP interface reaches the host: it pings the host's
/// address on the TAP and sends it a file over TCP, which the host checks. The guest negotiates
/// checksum and TSO offloads, which pass through the TAP's virtio-net headers untouched.
/// </summary>
public sealed class TapGuestTests
{
    private const int FileKiB = 2048;

    [Fact]
    public async Task A_guest_on_a_tap_port_pings_the_host_and_sends_it_a_file()
    {
        using var temp = new TempDirectory();
        var kernel = GuestKernel.FindInstalled();
        var initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("net-test.sh"), kernel);
        string name = "svtap" + Random.Shared.Next(0x1000, 0xffff).ToString("x");
        int subnet = Random.Shared.Next(1, 250);
        string hostIp = $"10.232.{subnet}.1", guestIp = $"10.232.{subnet}.2";
        string socket = temp.File("tap.sock");

        using var device = new NetDevice(new TapEndpoint(name), new NetDeviceOptions { Name = name });
        Ip("addr", "add", hostIp + "/24", "dev", name);
        Ip("link", "set", name, "up");
        using var stop = new CancellationTokenSource();
        var server = new BackendServer(device, new BackendOptions(), NullLogger.Instance);
        using var listening = new ManualResetEventSlim();
        var serverThread = new Thread(() => server.Run(socket, stop.Token, listening.Set)) { IsBackground = true };
        serverThread.Start();
        try
        {
            Assert.True(listening.Wait(TimeSpan.FromSeconds(10)));
            // The host's end of the transfer: bound to the TAP's address, so it cannot collide with anything else.
            using var listener = new TcpListener(IPAddress.Parse(hostIp), 5000);
            listener.Start();
            var received = Task.Run(async () =>
            {
                using var connection = await listener.AcceptTcpClientAsync();
                using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                var buffer = new byte[65536];
                long total = 0;
                var stream = connection.GetStream();
                int n;
                while ((n = await stream.ReadAsync(buffer)) > 0) { sha.AppendData(buffer, 0, n); total += n; }
                return (Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant(), total);
            });

            var run = await QemuGuest.RunAsync(new QemuGuestOptions
            {
                Kernel = kernel,
                Initramfs = initramfs,
                Name = "tap-client",
                WorkDirectory = temp.Path,
                Devices = [new VhostUserNetDevice(socket, "52:54:00:00:00:31")],
                Parameters = new Dictionary<string, string> { ["IP"] = guestIp, ["PEER"] = hostIp, ["ROLE"] = "client", ["KIB"] = FileKiB.ToString() },
                PeerLog = () => device.Port.Counters.ToString(),
            });
            run.AssertSucceeded();
            Assert.True(int.Parse(run.Single("SV-PING")) > 0, run.Report);
            var sent = run.Tagged("SV-SENT").Single();
            var (hash, length) = await received.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal((FileKiB * 1024).ToString(), sent[1]);
            Assert.Equal(sent[0], hash);
            Assert.Equal(FileKiB * 1024, length);
            Assert.True(Interlocked.Read(ref device.Port.Counters.TxOffloaded) > 0, $"the guest used no offloads: {device.Port.Counters}");
            Assert.Equal(0, device.Port.Counters.TxDrops);
        }
        finally
        {
            stop.Cancel();
            serverThread.Join(TimeSpan.FromSeconds(10));
        }
    }
}
