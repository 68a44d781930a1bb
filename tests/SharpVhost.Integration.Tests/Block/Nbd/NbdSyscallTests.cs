using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using SharpVhost.Devices.Block;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Block.Nbd;

/// <summary>
/// What the kernel sees of the NBD client, read with strace on `sharpvhost blk --nbd nbd://127.0.0.1:PORT`
/// while our frontend writes and reads 64 KiB: TCP_NODELAY set on the connection, a write's request header
/// and the guest's data in one sendmsg of two iovecs, and the read's data received by one recvmsg of the
/// guest buffer's whole length (straight into guest memory, no bounce buffer).
/// </summary>
[Collection("nbd servers")] // one at a time: nbdkit was seen ending on SIGTERM within 50 ms of its start while another NBD class ran beside it
public sealed partial class NbdSyscallTests
{
    [Fact]
    public async Task Requests_go_out_scatter_gather_and_replies_land_in_guest_buffers()
    {
        using var temp = new TempDirectory();
        int port = FreePort();
        var (nbdkit, nbdArguments) = NbdServers.Nbdkit(temp.Path, "nbdkit-tcp", ["-f", "-i", "127.0.0.1", "-p", port.ToString(), "memory", "16M"]);
        await using var nbd = await NbdServers.StartWithRetryAsync(async () =>
        {
            var server = await BackendProcess.StartAsync("nbdkit-tcp", nbdkit, nbdArguments, [], temp.Path);
            await WaitForTcpAsync(port, server);
            return server;
        }, null, temp.Path, "nbdkit-tcp");

        var trace = temp.File("strace.txt");
        var socket = temp.File("blk.sock");
        var (program, prefix) = SharpVhostCli.Command();
        string[] arguments = ["-f", "-qq", "-e", "trace=sendmsg,recvmsg,setsockopt", "-o", trace, program, .. prefix,
            "blk", "--socket-path", socket, "--nbd", $"nbd://127.0.0.1:{port}/"];
        byte[] written;
        await using (var server = await BackendProcess.StartAsync("sharpvhost-strace", Tools.Require("strace", "strace"), arguments, [socket], temp.Path))
        {
            using var client = BlockClient.Connect(socket, new BlockClientOptions { QueueDepth = 4, BufferBytes = 1 << 20 });
            var buffer = client.AllocateBuffer(65536);
            new Random(9).NextBytes(buffer.Span);
            written = buffer.Span.ToArray();
            await client.WriteAsync(1 << 20, buffer);
            buffer.Span.Clear();
            await client.ReadAsync(1 << 20, buffer);
            Assert.True(buffer.Span.SequenceEqual(written), "read back differs");
        }
        var lines = await File.ReadAllLinesAsync(trace);
        Assert.Contains(lines, l => l.Contains("setsockopt(", StringComparison.Ordinal) && l.Contains("TCP_NODELAY, [1]", StringComparison.Ordinal));
        // The write: 28-byte header + 65536 bytes of guest data, one call.
        Assert.True(lines.Any(l => l.Contains("sendmsg(", StringComparison.Ordinal) && l.Contains("msg_iovlen=2", StringComparison.Ordinal)
            && l.Contains("iov_len=28}", StringComparison.Ordinal) && l.Contains("iov_len=65536}", StringComparison.Ordinal) && l.EndsWith("= 65564", StringComparison.Ordinal)),
            "no sendmsg of header and guest data together:\n" + string.Join('\n', lines.Where(l => l.Contains("sendmsg(", StringComparison.Ordinal)).Take(20)));
        // The read: the data chunk's payload asked for in one recvmsg over the guest buffer.
        Assert.True(lines.Any(l => l.Contains("recvmsg(", StringComparison.Ordinal) && RecvIntoGuest().IsMatch(l)),
            "no recvmsg of the guest buffer's length:\n" + string.Join('\n', lines.Where(l => l.Contains("recvmsg(", StringComparison.Ordinal)).Take(30)));
    }

    [GeneratedRegex(@"iov_len=65536\}\], msg_iovlen=1,.*= \d+$")]
    private static partial Regex RecvIntoGuest();

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static async Task WaitForTcpAsync(int port, BackendProcess server)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            using var client = new TcpClient();
            try
            {
                await client.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                // The port was free when probed; another program may have taken it since: say so.
                if (server.ExitCode is { } code) throw new InvalidOperationException($"nbdkit exited ({code}) before listening on {port}:\n{server.Log}");
                await Task.Delay(20);
            }
        }
    }
}
