using System.Diagnostics;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Packaging;

/// <summary>
/// The example units in packaging/systemd: systemd's own parser accepts them (systemd-analyze verify,
/// on an instance, with ExecStart pointed at this build), each service is Type=notify with the
/// hardening the issue asks for, and the net one keeps CAP_NET_ADMIN and no other capability.
/// </summary>
public sealed class SystemdUnitTests
{
    [Theory]
    [InlineData("blk", "")]
    [InlineData("net", "CAP_NET_ADMIN")]
    public async Task Units_verify_and_carry_the_hardening(string device, string capabilities)
    {
        using var temp = new TempDirectory();
        var binary = temp.File($"sharpvhost-{device}");
        File.CreateSymbolicLink(binary, QemuDescriptorTests.Apphost());
        var service = File.ReadAllText(RepositoryFiles.Get("packaging", "systemd", $"sharpvhost-{device}@.service"));
        var socket = File.ReadAllText(RepositoryFiles.Get("packaging", "systemd", $"sharpvhost-{device}@.socket"));

        var settings = service.Split('\n').Where(l => l.Contains('=') && !l.StartsWith('#')).Select(l => l.Split('=', 2)).ToLookup(kv => kv[0], kv => kv[1]);
        foreach (var (key, value) in new[] { ("Type", "notify"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes") })
            Assert.Equal(value, Assert.Single(settings[key]));
        Assert.Equal(capabilities, Assert.Single(settings["CapabilityBoundingSet"]));
        Assert.Equal(capabilities, Assert.Single(settings["AmbientCapabilities"]));
        Assert.StartsWith($"/usr/libexec/sharpvhost-{device} ", Assert.Single(settings["ExecStart"]));

        // An instance of each template, the binary path swapped for this build's.
        File.WriteAllText(temp.File($"sharpvhost-{device}@t0.service"), service.Replace($"/usr/libexec/sharpvhost-{device}", binary));
        File.WriteAllText(temp.File($"sharpvhost-{device}@t0.socket"), socket);
        var start = new ProcessStartInfo(Tools.Require("systemd-analyze", "systemd"), ["verify", temp.File($"sharpvhost-{device}@t0.service"), temp.File($"sharpvhost-{device}@t0.socket")])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var verify = Process.Start(start)!;
        var stderr = verify.StandardError.ReadToEndAsync();
        var stdout = await verify.StandardOutput.ReadToEndAsync();
        using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await verify.WaitForExitAsync(bounded.Token);
        var complaints = await stderr;
        Assert.True(verify.ExitCode == 0 && complaints.Trim().Length == 0, $"systemd-analyze verify: exit {verify.ExitCode}\n{complaints}{stdout}");
    }
}
