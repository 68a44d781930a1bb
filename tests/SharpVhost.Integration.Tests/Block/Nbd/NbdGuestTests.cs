using System.Text;
using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Block.Nbd;

/// <summary>
/// A QEMU guest's disk is `sharpvhost blk --nbd` in front of a real NBD server the test starts: qemu-nbd
/// exporting a qcow2 image (checked afterwards by qemu-img compare), nbdkit memory with two queues,
/// nbdkit failing every write (the guest sees those fail and nothing else), and nbdkit killed and
/// started again while the guest writes.
/// </summary>
[Collection("nbd servers")] // one at a time: nbdkit was seen ending on SIGTERM within 50 ms of its start while another NBD class ran beside it
public sealed class NbdGuestTests
{
    [Fact]
    public async Task Guest_writes_a_qcow2_image_through_qemu_nbd_that_qemu_img_finds_identical()
    {
        using var temp = new TempDirectory();
        const int seed = 310;
        var qcow2 = temp.File("disk.qcow2");
        var (code, output) = await NbdServers.QemuImgAsync("create", "-q", "-f", "qcow2", qcow2, BlockPatterns.DiskBytes.ToString());
        Assert.True(code == 0, output);
        var nbdSocket = temp.File("nbd.sock");
        var socket = temp.File("blk.sock");
        await using (var nbd = await NbdServers.QemuNbdAsync(nbdSocket, qcow2, "qcow2", temp.Path, "qemu-nbd"))
        {
            await using (var server = await new SharpVhostNbdBlockBackend(NbdServers.UriFor(nbdSocket)).StartAsync(new BlockBackendRequest(socket, "", 1, temp.Path)))
            {
                var run = await BlockGuestTests.BootAsync(temp, server, socket, 1, false, seed, "write");
                BlockGuestTests.AssertGuestVerified(run, seed);
                Assert.Equal((BlockPatterns.DiskBytes / 512).ToString(), run.Single("SV-SIZE"));
                Assert.Contains("structured replies", server.Log, StringComparison.Ordinal);
            }
        }
        var raw = temp.File("expected.raw");
        await File.WriteAllBytesAsync(raw, BlockPatterns.ExpectedImage(seed));
        (code, output) = await NbdServers.QemuImgAsync("compare", "-f", "qcow2", "-F", "raw", qcow2, raw);
        Assert.True(code == 0, "qemu-img compare: " + output);
    }

    [Fact]
    public async Task Guest_with_two_queues_writes_and_reads_back_through_nbdkit_memory()
    {
        using var temp = new TempDirectory();
        const int seed = 320;
        var nbdSocket = temp.File("nbd.sock");
        var socket = temp.File("blk.sock");
        await using var nbd = await NbdServers.NbdkitAsync(nbdSocket, temp.Path, "nbdkit-memory", "memory", BlockPatterns.DiskBytes.ToString());
        await using var server = await new SharpVhostNbdBlockBackend(NbdServers.UriFor(nbdSocket)).StartAsync(new BlockBackendRequest(socket, "", 2, temp.Path));
        var run = await BlockGuestTests.BootAsync(temp, server, socket, 2, false, seed, "write");
        BlockGuestTests.AssertGuestVerified(run, seed);
        Assert.Equal("2", run.Single("SV-QUEUES"));
    }

    [Fact]
    public async Task Guest_sees_the_injected_write_errors_and_nothing_else_fails()
    {
        using var temp = new TempDirectory();
        var nbdSocket = temp.File("nbd.sock");
        var socket = temp.File("blk.sock");
        await using var nbd = await NbdServers.NbdkitAsync(nbdSocket, temp.Path, "nbdkit-error",
            "--filter=error", "memory", "32M", "error-pwrite=EIO", "error-pwrite-rate=100%");
        await using var server = await new SharpVhostNbdBlockBackend(NbdServers.UriFor(nbdSocket)).StartAsync(new BlockBackendRequest(socket, "", 1, temp.Path));
        var kernel = GuestKernel.FindInstalled();
        var run = await QemuGuest.RunAsync(new QemuGuestOptions
        {
            Kernel = kernel,
            Initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("blk-errors.sh"), kernel),
            Name = "blk-nbd-errors",
            WorkDirectory = temp.Path,
            Devices = [new VhostUserBlockDevice(socket, 1)],
            PeerLog = () => nbd.Log + server.Log,
        });
        run.AssertSucceeded();
        Assert.Equal("ok", run.Tagged("SV-READ").Single()[0]);
        var write = run.Tagged("SV-WRITE").Single();
        Assert.True(write[0] == "failed" && string.Join(' ', write).Contains("Input/output error", StringComparison.Ordinal), run.Report);
        Assert.Equal("ok", run.Tagged("SV-READ-AFTER").Single()[0]);
        Assert.Null(((BackendProcess)server).ExitCode); // the backend still runs
    }

    [Fact]
    public async Task Nbd_server_killed_and_restarted_while_the_guest_writes_loses_nothing()
    {
        using var temp = new TempDirectory();
        const int blocks = 60;
        var image = temp.File("disk.raw");
        using (var file = File.Create(image)) file.SetLength(32 << 20);
        var nbdSocket = temp.File("nbd.sock");
        var socket = temp.File("blk.sock");
        string[] slowFile = ["--filter=delay", "file", image, "delay-write=50ms"];
        var nbd = await NbdServers.NbdkitAsync(nbdSocket, temp.Path, "nbdkit-0", slowFile);
        var logs = new StringBuilder();
        await using var server = await new SharpVhostNbdBlockBackend(NbdServers.UriFor(nbdSocket), "--nbd-reconnect-delay", "60")
            .StartAsync(new BlockBackendRequest(socket, "", 1, temp.Path));
        var kernel = GuestKernel.FindInstalled();
        var guest = QemuGuest.RunAsync(new QemuGuestOptions
        {
            Kernel = kernel,
            Initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("blk-reconnect.sh"), kernel),
            Name = "blk-nbd-server-kill",
            WorkDirectory = temp.Path,
            Devices = [new VhostUserBlockDevice(socket, 1)],
            Parameters = new Dictionary<string, string> { ["BLOCKS"] = blocks.ToString() },
            PeerLog = () => logs + nbd.Log + server.Log,
            Timeout = TimeSpan.FromMinutes(5),
        });
        int kills = 0;
        try
        {
            var random = new Random(5);
            while (kills < 3 && !guest.IsCompleted)
            {
                await Task.WhenAny(guest, Task.Delay(random.Next(1500, 3000)));
                if (guest.IsCompleted) break;
                await nbd.CrashAsync();
                logs.Append(nbd.Log).AppendLine($"[test] ---- nbdkit killed ({kills + 1}) ----");
                await nbd.DisposeAsync();
                await Task.Delay(300); // the backend's requests wait for the server meanwhile
                nbd = await NbdServers.NbdkitAsync(nbdSocket, temp.Path, $"nbdkit-{kills + 1}", slowFile);
                kills++;
            }
            var run = await guest;
            run.AssertSucceeded();
            Assert.Empty(run.Tagged("SV-ERROR"));
            Assert.Equal(blocks, run.Tagged("SV-DONE").Count);
            Assert.Equal($"{blocks} 0", string.Join(' ', Assert.Single(run.Tagged("SV-VERIFIED"))));
            Assert.True(kills >= 1, "the guest finished before the server was killed");
            Assert.Contains("reconnected", server.Log, StringComparison.Ordinal);
            Assert.Null(((BackendProcess)server).ExitCode);
        }
        finally
        {
            await nbd.DisposeAsync();
        }
        // On the host: every block the guest wrote is in the file nbdkit served.
        var bytes = await File.ReadAllBytesAsync(image);
        for (int i = 0; i < blocks; i++)
        {
            var line = $"sharpvhost reconnect block {i:D8}\n";
            var text = new StringBuilder();
            while (text.Length < 4096) text.Append(line);
            Assert.True(bytes.AsSpan(i * 4096, 4096).SequenceEqual(Encoding.ASCII.GetBytes(text.ToString(0, 4096))), $"block {i}");
        }
    }
}
