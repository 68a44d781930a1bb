using System.Text;
using Xunit.Abstractions;
using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Block;

/// <summary>
/// Crash recovery (INFLIGHT_SHMFD): a guest writes a sequence of blocks while the backend is killed
/// with SIGKILL and restarted on the same socket again and again; QEMU reconnects (chardev
/// reconnect=1) and hands the restarted backend its inflight region. Every write the guest saw
/// complete must be on disk, and no block may be torn.
/// </summary>
public sealed class BlockReconnectTests(ITestOutputHelper output)
{
    private const int Blocks = 200;
    private const int BlockSize = 4096;

    [Theory]
    [InlineData("direct", false, false)]
    [InlineData("checked", false, false)]
    [InlineData("direct", true, false)] // packed=on: recovery from the packed inflight region
    [InlineData("checked", true, false)]
    [InlineData("direct", false, true)] // the disk on an NBD server (nbdkit, its delay filter) that outlives the backend
    // Client mode: QEMU listens (server=on, OVS dpdkvhostuserclient's and libvirt mode='server''s way)
    // and each restarted backend connects to it with --client.
    [InlineData("direct", false, false, true)]
    public async Task Writes_the_guest_saw_complete_survive_backend_crashes(string metadata, bool packed, bool nbd, bool client = false)
    {
        using var temp = new TempDirectory();
        var image = temp.File("disk.img");
        using (var file = File.Create(image)) file.SetLength(32 << 20);
        var socket = temp.File("blk.sock");
        // A slow disk so that kills land while requests are in flight. The guest spends 100-200 ms of TCG
        // time between its one-block writes (a dd per block): at 15 ms per request only one kill in
        // five to ten found a request in flight, and all ten of a run sometimes missed.
        BackendProcess? nbdServer = nbd
            ? await NbdServers.NbdkitAsync(temp.File("nbd.sock"), temp.Path, "nbdkit", "--filter=delay", "file", image, "delay-write=100ms")
            : null;
        IBlockBackendUnderTest backend = nbd
            ? new SharpVhostNbdBlockBackend(NbdServers.UriFor(temp.File("nbd.sock")), "--metadata", metadata)
            : new SharpVhostBlockBackend(metadata, "--io-delay-ms", "100");
        var request = new BlockBackendRequest(socket, image, 1, temp.Path);
        var (program, prefix) = SharpVhostCli.Command();
        async Task<BackendProcess> StartBackend() => client
            ? await BackendProcess.StartAsync("client-" + metadata, program,
                [.. prefix, "blk", "--socket-path", socket, "--client", "--blk-file", image, "--metadata", metadata, "--io-delay-ms", "100"], [], temp.Path)
            : (BackendProcess)await backend.StartAsync(request);
        var server = await StartBackend();
        var logs = new StringBuilder();

        var kernel = GuestKernel.FindInstalled();
        var guest = QemuGuest.RunAsync(new QemuGuestOptions
        {
            Kernel = kernel,
            Initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("blk-reconnect.sh"), kernel),
            Name = "blk-reconnect-" + metadata + (packed ? "-packed" : "") + (nbd ? "-nbd" : "") + (client ? "-client" : ""),
            WorkDirectory = temp.Path,
            // A listening QEMU needs no reconnect=: it waits for the next backend on its socket.
            Devices = [new VhostUserBlockDevice(socket, 1) { ReconnectSeconds = client ? null : 1, Server = client, ExtraProperties = packed ? ["packed=on"] : [] }],
            Parameters = new Dictionary<string, string> { ["BLOCKS"] = Blocks.ToString() },
            PeerLog = () => logs + server.Log,
            Timeout = TimeSpan.FromMinutes(6),
        });

        int cycles = 0;
        var random = new Random(7);
        try
        {
            // Start killing once the guest's script writes: a kill while the kernel boots finds nothing in
            // flight, and on a loaded machine (a slow TCG boot) all ten cycles once landed there.
            await WaitForFirstBlockAsync(image, guest);
            // Crash the backend at random moments while the guest writes; bounded in count.
            while (cycles < 10 && !guest.IsCompleted)
            {
                // Kill only once QEMU has finished setting the device up again (the queue runs): a kill in the middle
                // of QEMU's own reconnect handshake tests QEMU, not us (7.2 can wedge there).
                var connected = Task.Run(async () =>
                {
                    while (!guest.IsCompleted && !server.Log.Contains(" running (", StringComparison.Ordinal)) await Task.Delay(50);
                });
                await Task.WhenAny(guest, connected, Task.Delay(TimeSpan.FromSeconds(60)));
                await Task.WhenAny(guest, Task.Delay(random.Next(1000, 2500)));
                if (guest.IsCompleted) break;
                await server.CrashAsync();
                logs.Append(server.Log).AppendLine($"[test] ---- backend killed (cycle {cycles + 1}) ----");
                await server.DisposeAsync();
                if (!client) File.Delete(socket); // the dead backend's socket file; the harness waits for the new one (QEMU's, in client mode)
                server = await StartBackend();
                cycles++;
            }
            var run = await guest;
            output.WriteLine($"backend kill/restart cycles: {cycles}");
            run.AssertSucceeded();
            var done = run.Tagged("SV-DONE").Select(w => int.Parse(w[0])).ToHashSet();
            Assert.Equal(Blocks, done.Count);
            Assert.Equal($"{Blocks} 0", string.Join(' ', Assert.Single(run.Tagged("SV-VERIFIED"))));
            Assert.True(cycles >= 3, $"only {cycles} crash cycles happened before the guest finished\n{run.Report}");
            Assert.True(logs.ToString().Contains("resubmitted", StringComparison.Ordinal),
                $"no restart found requests in flight to resubmit: the test did not exercise recovery\n{run.Report}");
        }
        finally
        {
            await server.DisposeAsync();
            if (nbdServer is not null) await nbdServer.DisposeAsync();
        }

        // On the host: every block the guest saw complete holds its whole pattern (nothing torn, nothing lost).
        var bytes = File.ReadAllBytes(image);
        for (int i = 0; i < Blocks; i++)
        {
            var expected = Pattern(i);
            Assert.True(bytes.AsSpan(i * BlockSize, BlockSize).SequenceEqual(expected), $"block {i} on disk is not what the guest wrote");
        }
        int resubmissions = logs.ToString().Split('\n').Count(line => line.Contains("resubmitted", StringComparison.Ordinal));
        output.WriteLine($"verified {Blocks} blocks on the host after {cycles} crashes; {resubmissions} restart(s) resubmitted in-flight requests");
    }

    /// <summary>Waits until block 0 holds its pattern on the host (or the guest has ended, or a minute and a half has passed).</summary>
    private static async Task WaitForFirstBlockAsync(string image, Task guest)
    {
        var expected = Pattern(0);
        var buffer = new byte[BlockSize];
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (!guest.IsCompleted && DateTime.UtcNow < deadline)
        {
            using (var file = new FileStream(image, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
                if (file.ReadAtLeast(buffer, BlockSize, throwOnEndOfStream: false) == BlockSize && buffer.AsSpan().SequenceEqual(expected)) return;
            await Task.Delay(50);
        }
    }

    private static byte[] Pattern(int block)
    {
        var line = $"sharpvhost reconnect block {block:D8}\n";
        var text = new StringBuilder();
        while (text.Length < BlockSize) text.Append(line);
        return Encoding.ASCII.GetBytes(text.ToString(0, BlockSize));
    }
}
