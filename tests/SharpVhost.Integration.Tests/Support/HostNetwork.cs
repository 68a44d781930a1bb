using System.Diagnostics;

namespace SharpVhost.Integration.Tests.Support;

/// <summary>Configures the host's network for the TAP tests (they run as root).</summary>
public static class HostNetwork
{
    /// <summary>Runs <c>ip</c> with <paramref name="args"/>; throws with its standard error when it fails.</summary>
    public static void Ip(params string[] args)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)}: {error}");
    }
}
