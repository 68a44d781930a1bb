using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>
/// Two Linux guests, each on a vhost-user-net port of the same backend, ping each other and
/// move a file with busybox nc; against every backend in <see cref="NetBackends"/>.
/// </summary>
public sealed class NetGuestTests
{
    private const int FileKiB = 256;

    public static TheoryData<string> Backends() => NetBackends.Names();

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Two_guests_ping_each_other_and_move_a_file(string backend)
    {
        using var temp = new TempDirectory();
        var kernel = GuestKernel.FindInstalled();
        var initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("net-test.sh"), kernel);
        var sockets = new[] { temp.File("port0.sock"), temp.File("port1.sock") };
        await using var server = await NetBackends.Get(backend).StartAsync(new NetBackendRequest(sockets, temp.Path));

        QemuGuestOptions Guest(string role, int port, string ip, string peer, string mac) => new()
        {
            Kernel = kernel,
            Initramfs = initramfs,
            Name = $"net-{role}",
            WorkDirectory = temp.Path,
            Devices = [new VhostUserNetDevice(sockets[port], mac)],
            Parameters = new Dictionary<string, string>
            {
                ["IP"] = ip, ["PEER"] = peer, ["ROLE"] = role, ["KIB"] = FileKiB.ToString(),
            },
            PeerLog = () => server.Log,
        };
        await using var receiver = QemuGuest.Start(Guest("server", 0, "10.0.0.1", "10.0.0.2", "52:54:00:00:00:01"));
        await using var sender = QemuGuest.Start(Guest("client", 1, "10.0.0.2", "10.0.0.1", "52:54:00:00:00:02"));
        var received = (await receiver.WaitAsync()).AssertSucceeded();
        var sent = (await sender.WaitAsync()).AssertSucceeded();

        Assert.Equal("52:54:00:00:00:01", received.Single("SV-MAC"));
        Assert.Equal("52:54:00:00:00:02", sent.Single("SV-MAC"));
        // The scripts only go on once a first ping got through; these are the three after it.
        Assert.True(int.Parse(received.Single("SV-PING")) > 0, received.Report);
        Assert.True(int.Parse(sent.Single("SV-PING")) > 0, sent.Report);

        var sentFile = sent.Tagged("SV-SENT").Single();
        var receivedFile = received.Tagged("SV-RECEIVED").Single();
        Assert.Equal((FileKiB * 1024).ToString(), sentFile[1]);
        Assert.Equal(sentFile, receivedFile); // same checksum and size on both ends
    }
}
