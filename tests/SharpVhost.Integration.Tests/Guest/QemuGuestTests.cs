using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Guest;

/// <summary>The harness itself: what a guest script reports reaches the test, and a hang fails.</summary>
public sealed class QemuGuestTests
{
    [Fact]
    public async Task Script_output_parameters_and_exit_status_reach_the_host()
    {
        using var temp = new TempDirectory();
        var options = await OptionsAsync(temp, "echo \"SV-HELLO $SV_WORD\"\nexit 3\n") with
        {
            Parameters = new Dictionary<string, string> { ["WORD"] = "virtio" },
        };

        var run = await QemuGuest.RunAsync(options);

        Assert.Equal(3, run.ExitStatus);
        Assert.Equal("virtio", run.Single("SV-HELLO"));
    }

    [Fact]
    public async Task A_hung_guest_fails_with_its_console_and_QEMU_is_killed()
    {
        using var temp = new TempDirectory();
        var options = await OptionsAsync(temp, "echo SV-STUCK\nsleep 600\n") with { Timeout = TimeSpan.FromSeconds(10) };

        await using var guest = QemuGuest.Start(options);
        var failure = await Assert.ThrowsAsync<GuestFailedException>(guest.WaitAsync);
        await guest.DisposeAsync();

        Assert.Contains("hung", failure.Message);
        Assert.Contains("--- console ---", failure.Message);
        Assert.True(guest.HasExited);
    }

    private static async Task<QemuGuestOptions> OptionsAsync(TempDirectory temp, string script)
    {
        var path = temp.File("script.sh");
        await File.WriteAllTextAsync(path, script);
        var kernel = GuestKernel.FindInstalled();
        return new QemuGuestOptions
        {
            Kernel = kernel,
            Initramfs = await InitramfsCache.GetAsync(path, kernel),
            WorkDirectory = temp.Path,
        };
    }
}
