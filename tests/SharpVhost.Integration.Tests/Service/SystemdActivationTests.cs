using SharpVhost.Devices.Block;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Service;

/// <summary>
/// systemd socket activation with systemd's own tool: systemd-socket-activate listens, passes the
/// sockets (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) to the backend it execs at the first connection,
/// and the backend must tell the test's NOTIFY_SOCKET READY=1 and then serve on the passed socket.
/// </summary>
public sealed class SystemdActivationTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private const int OCloexec = 0x80000; // 02000000 octal, as /proc/PID/fdinfo prints it

    [Fact]
    public async Task Socket_activated_block_backend_reports_ready_and_serves_a_block()
    {
        using var temp = new TempDirectory();
        var image = temp.File("disk.img");
        var pattern = new byte[4096];
        new Random(7).NextBytes(pattern);
        await using (var file = File.Create(image))
        {
            file.SetLength(1 << 20);
            file.Position = 8192;
            await file.WriteAsync(pattern);
        }
        var socket = temp.File("blk.sock");
        using var notify = new NotifySocket();
        var activate = Tools.Require("systemd-socket-activate", "systemd");
        await using var backend = await BackendProcess.StartAsync("activated-blk", activate,
            ["-l", socket, "--fdname=disk0", "-E", "NOTIFY_SOCKET", Apphost(), "blk", "--blk-file", image],
            [socket], temp.Path, environment: new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Address });

        // The first connection makes systemd-socket-activate exec the backend on the listening socket.
        using var client = BlockClient.Connect(socket, new BlockClientOptions { BufferBytes = 1 << 20 });
        var ready = await notify.ReceiveAsync(Patience);
        Assert.Equal("1", ready.GetValueOrDefault("READY"));
        Assert.Equal(backend.ProcessId.ToString(), ready.GetValueOrDefault("MAINPID")); // exec'd: the same process
        Assert.Contains("disk0", ready.GetValueOrDefault("STATUS")); // LISTEN_FDNAMES named the socket

        // At the kernel: fd 3 is the passed socket and the backend marked it close-on-exec.
        Assert.StartsWith("socket:", File.ResolveLinkTarget($"/proc/{backend.ProcessId}/fd/3", false)!.Name);
        Assert.True((FdInfoFlags(backend.ProcessId, 3) & OCloexec) != 0, "the passed socket is not FD_CLOEXEC");

        var buffer = client.AllocateBuffer(4096);
        await client.ReadAsync(8192, buffer);
        Assert.True(buffer.Span.SequenceEqual(pattern), "the block read through the activated backend differs from the image");
        Assert.Equal(1 << 20, client.Capacity);
    }

    [Fact]
    public async Task Socket_activated_net_backend_makes_a_port_of_each_named_socket()
    {
        using var temp = new TempDirectory();
        string left = temp.File("left.sock"), right = temp.File("right.sock");
        using var notify = new NotifySocket();
        var activate = Tools.Require("systemd-socket-activate", "systemd");
        await using var backend = await BackendProcess.StartAsync("activated-net", activate,
            ["-l", left, "-l", right, "--fdname=left:right", "-E", "NOTIFY_SOCKET", Apphost(), "net", "--switch"],
            [left, right], temp.Path, environment: new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Address });

        using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        await probe.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(left));
        var ready = await notify.ReceiveAsync(Patience);
        Assert.Equal("1", ready.GetValueOrDefault("READY"));
        Assert.Contains("2 port(s)", ready.GetValueOrDefault("STATUS"));
        Assert.Contains("port left:", backend.Log);
        Assert.Contains("port right:", backend.Log);
        foreach (int fd in new[] { 3, 4 })
            Assert.StartsWith("socket:", File.ResolveLinkTarget($"/proc/{backend.ProcessId}/fd/{fd}", false)!.Name);
    }

    [Fact]
    public async Task Net_backend_serves_the_socket_named_by_fd()
    {
        // --fd N as QEMU's conventions define it, for net as for blk: the inherited fd here is the
        // one systemd-socket-activate opened (an explicit --fd wins over LISTEN_FDS).
        using var temp = new TempDirectory();
        var socket = temp.File("echo.sock");
        var activate = Tools.Require("systemd-socket-activate", "systemd");
        await using var backend = await BackendProcess.StartAsync("fd-net", activate,
            ["-l", socket, Apphost(), "net", "--fd", "3", "--echo"], [socket], temp.Path);
        using var client = SharpVhost.Devices.Net.NetClient.Connect(socket, timeout: Patience);
        var frame = new byte[80];
        SharpVhost.Devices.Net.MacAddress.Parse("02:00:00:00:00:0b").Write(frame);
        SharpVhost.Devices.Net.MacAddress.Parse("02:00:00:00:00:0a").Write(frame.AsSpan(6));
        var buffer = new byte[2048];
        Assert.True(client.Send(frame, Patience));
        Assert.Equal(frame.Length, client.Receive(buffer, Patience));
        Assert.Equal(frame.AsSpan(0, 6).ToArray(), buffer.AsSpan(6, 6).ToArray()); // echoed with the addresses swapped
        Assert.Contains("port fd3:", backend.Log);
    }

    internal static int FdInfoFlags(int pid, int fd)
    {
        var line = File.ReadLines($"/proc/{pid}/fdinfo/{fd}").First(l => l.StartsWith("flags:", StringComparison.Ordinal));
        return Convert.ToInt32(line["flags:".Length..].Trim(), 8);
    }

    // systemd-socket-activate execs a program: the apphost, not `dotnet sharpvhost.dll` (which would work too, but one path is enough).
    private static string Apphost() => Packaging.QemuDescriptorTests.Apphost();
}
