using System.Diagnostics;

namespace SharpVhost.Bench;

/// <summary>The external programs the benchmarks start, and a helper to run one to completion.</summary>
public static class Tools
{
    public const string QemuStorageDaemon = "qemu-storage-daemon";
    public const string Testpmd = "dpdk-testpmd";
    public const string Taskset = "taskset";

    /// <summary>Full path of <paramref name="program"/> on PATH, or null.</summary>
    public static string? Find(string program)
    {
        if (program.Contains('/')) return File.Exists(program) ? program : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':'))
        {
            string candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>Runs a program for at most 20 s and returns its stdout (null if it could not start or failed).</summary>
    public static string? Run(string program, params string[] args)
    {
        if (Find(program) is null) return null;
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(info)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            _ = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(20_000))
            {
                p.Kill(entireProcessTree: true);
                return null;
            }
            return p.ExitCode == 0 ? stdout.Result : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
