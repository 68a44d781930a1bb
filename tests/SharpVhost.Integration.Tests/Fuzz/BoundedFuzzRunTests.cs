using System.Diagnostics;
using Xunit.Abstractions;

namespace SharpVhost.Integration.Tests.Fuzz;

/// <summary>
/// Runs each fuzz target under afl-fuzz for a bounded time (<c>fuzz/run.sh &lt;target&gt; &lt;seconds&gt;</c>;
/// 30 s each unless FUZZ_CI_SECONDS says otherwise). Fails when afl-fuzz reports a crash or a hang,
/// and when the run cannot start at all (no afl-fuzz, no sharpfuzz tool, a build error): a fuzzer
/// that silently does not run protects nothing. The targets run one after another (one test class).
/// </summary>
public sealed class BoundedFuzzRunTests(ITestOutputHelper output)
{
    /// <summary>Every target: each has a corpus folder (the unit tests check that the two sets agree).</summary>
    public static TheoryData<string> Targets() =>
        [.. Directory.GetDirectories(Path.Combine(RepoRoot(), "fuzz", "corpus")).Select(d => Path.GetFileName(d)).Order(StringComparer.Ordinal)];

    [Theory]
    [MemberData(nameof(Targets))]
    public async Task Target_runs_under_afl_without_crash_or_hang(string target)
    {
        int seconds = int.TryParse(Environment.GetEnvironmentVariable("FUZZ_CI_SECONDS"), out int s) && s > 0 ? s : 30;
        string script = Path.Combine(RepoRoot(), "fuzz", "run.sh");
        Assert.True(File.Exists(script), $"{script} is missing");

        var start = new ProcessStartInfo("bash", [script, target, seconds.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        // Build, instrumentation and afl's calibration come on top of the fuzzing time.
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(seconds + 600));
        bool exited = true;
        try { await process.WaitForExitAsync(deadline.Token); }
        catch (OperationCanceledException)
        {
            exited = false;
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        string text = await stdout + await stderr;
        output.WriteLine(text);

        Assert.True(exited, $"fuzz/run.sh {target} {seconds} did not finish:\n{text}");
        Assert.Contains($"fuzz {target}: ", text);
        Assert.True(process.ExitCode == 0, $"fuzz/run.sh {target} exited {process.ExitCode}:\n{text}");
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharpVhost.slnx"))) return dir.FullName;
        throw new InvalidOperationException("repository root (SharpVhost.slnx) not found above " + AppContext.BaseDirectory);
    }
}
