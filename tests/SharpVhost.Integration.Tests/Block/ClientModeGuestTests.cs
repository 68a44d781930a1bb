using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Block;

/// <summary>
/// Client mode (--client): QEMU listens (-chardev socket,server=on, as libvirt's mode='server' sets up)
/// and the backend connects. One backend process serves a guest, sees QEMU exit, and connects again
/// to the next QEMU on the same path, whose guest reads back what the first one wrote.
/// </summary>
public sealed class ClientModeGuestTests
{
    [Fact]
    public async Task Backend_connects_to_a_listening_qemu_and_again_after_qemu_restarts()
    {
        using var temp = new TempDirectory();
        const int seed = 300;
        var image = BlockGuestTests.CreateImage(temp);
        var socket = temp.File("qemu.sock");
        var (program, prefix) = SharpVhostCli.Command();
        // Started first, before anything listens: it must wait for QEMU, not give up.
        await using (var backend = await BackendProcess.StartAsync("client-blk", program,
            [.. prefix, "blk", "--socket-path", socket, "--client", "--blk-file", image], [], temp.Path))
        {
            BlockGuestTests.AssertGuestVerified(await BootAsync(temp, backend, socket, seed, "write"), seed);
            BlockGuestTests.AssertGuestVerified(await BootAsync(temp, backend, socket, seed, "verify"), seed);
            Assert.Equal(2, CountOccurrences(backend.Log, "connected to frontend at"));
            Assert.Null(backend.ExitCode);
        }
        BlockGuestTests.AssertImageHolds(image, seed);
    }

    private static async Task<GuestRun> BootAsync(TempDirectory temp, IRunningBackend backend, string socket, int seed, string mode)
    {
        var kernel = GuestKernel.FindInstalled();
        return await QemuGuest.RunAsync(new QemuGuestOptions
        {
            Kernel = kernel,
            Initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("blk-test.sh"), kernel),
            Name = $"client-{mode}",
            WorkDirectory = temp.Path,
            Devices = [new VhostUserBlockDevice(socket) { Server = true }],
            Parameters = new Dictionary<string, string> { ["SEED"] = seed.ToString(), ["MODE"] = mode },
            PeerLog = () => backend.Log,
        });
    }

    private static int CountOccurrences(string text, string what)
    {
        int count = 0;
        for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}
