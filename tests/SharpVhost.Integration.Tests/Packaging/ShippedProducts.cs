using System.Diagnostics;
using System.Text;

namespace SharpVhost.Integration.Tests.Packaging;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PackagingCollection
{
    /// <summary>One scripts/package.sh at a time: its products are shared by every test here.</summary>
    public const string Name = "packaging (shared build products)";
}

/// <summary>
/// What scripts/package.sh builds, built once and reused (the script skips a step whose output is newer
/// than every source): the NativeAOT binary, the .nupkg files, the .deb.
/// </summary>
public static class ShippedProducts
{
    public static string RepoRoot { get; } = FindRoot();

    public static string Version { get; } =
        System.Text.RegularExpressions.Regex.Match(File.ReadAllText(Path.Combine(RepoRoot, "Directory.Build.props")), "<Version>([^<]+)</Version>").Groups[1].Value;

    /// <summary>The NativeAOT backend binary.</summary>
    public static string AotBinary() { Build("aot"); return Path.Combine(RepoRoot, ".build", "aot", "sharpvhost"); }

    /// <summary>The folder of .nupkg files: a local feed.</summary>
    public static string PackageFeed() { Build("nupkg"); return Path.Combine(RepoRoot, ".build", "nupkg"); }

    public static string DebianPackage() { Build("deb"); return Path.Combine(RepoRoot, ".build", "deb", $"sharpvhost_{Version}_amd64.deb"); }

    private static void Build(string what)
    {
        var result = Run("bash", [Path.Combine(RepoRoot, "scripts", "package.sh"), what], TimeSpan.FromMinutes(15));
        if (result.ExitCode != 0) throw new InvalidOperationException($"scripts/package.sh {what} failed ({result.ExitCode}):\n{result.Output}");
    }

    public sealed record Result(int ExitCode, string Stdout, string Output);

    /// <summary>Runs a program to its end; <paramref name="environment"/> entries with a null value are removed.</summary>
    public static Result Run(string program, IEnumerable<string> args, TimeSpan timeout, string? workingDirectory = null,
        IReadOnlyDictionary<string, string?>? environment = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory ?? RepoRoot };
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string?>())
        {
            if (v is null) start.Environment.Remove(k); else start.Environment[k] = v;
        }
        using var p = Process.Start(start)!;
        var stdout = new StringBuilder();
        var all = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is null) return; lock (all) { stdout.AppendLine(e.Data); all.AppendLine(e.Data); } };
        p.ErrorDataReceived += (_, e) => { if (e.Data is null) return; lock (all) all.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', start.ArgumentList)} did not finish within {timeout}:\n{all}");
        }
        p.WaitForExit();
        lock (all) return new Result(p.ExitCode, stdout.ToString(), all.ToString());
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharpVhost.slnx"))) return dir.FullName;
        throw new InvalidOperationException("repository root (SharpVhost.slnx) not found above " + AppContext.BaseDirectory);
    }
}
