using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tool;

/// <summary>What Spin's compiled verifier (pan) reported.</summary>
public sealed record SpinResult(bool Violation, long States, double Seconds, string Output)
{
    public double StatesPerSecond => Seconds > 0 ? States / Seconds : 0;
}

/// <summary>
/// Runs the Promela twin of the core scenario with Spin (spin -a, gcc, ./pan) and parses the verdict,
/// stored states and time. Used by the cross-check test and by <c>mmcheck --bench-vs-spin</c>.
/// </summary>
public static partial class SpinBench
{
    public static string DefaultPromelaPath()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "promela", "core.pml");
            if (File.Exists(p)) return p;
        }
        var cwd = Path.Combine(Directory.GetCurrentDirectory(), "promela", "core.pml");
        return cwd;
    }

    /// <summary>The mmcheck scenario the Promela model mirrors.</summary>
    public static Scenario CoreScenario(int rounds, bool fix, int specs = 0, int specPasses = 1) => new()
    {
        Name = fix ? "core-fixed" : "core",
        Strategy = Strategy.GupLongterm,
        Page = Model.PageKind.Ext4,
        Rounds = rounds,
        Operations = [new(OperationKind.Writeback, 2), new(OperationKind.Reclaim), .. Enumerable.Repeat(new OperationSpec(OperationKind.Speculative, specPasses), specs)],
        Fixes = fix ? Model.Fixes.RefusePinnedFreeBuffers : Model.Fixes.None,
        Checks = new HashSet<Model.Rule> { Model.Rule.Ext4NoBuffersBug },
        MaxSteps = 10000,
    };

    /// <summary>Runs Spin on <paramref name="promela"/> with the given -D macros. Throws when spin or gcc is missing.</summary>
    /// <remarks>Tests pass <paramref name="optimize"/> false: gcc -O0 compiles pan.c several times faster, and their models are small.</remarks>
    public static SpinResult RunSpin(string promela, int rounds, bool fix, int specs = 0, int specPasses = 1, bool optimize = true)
    {
        string dir = Path.Combine(Path.GetTempPath(), "mmcheck-spin-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            string model = Path.Combine(dir, "m.pml");
            File.Copy(promela, model);
            Exec("spin", $"-DROUNDS={rounds} -DFIX={(fix ? 1 : 0)} -DSPECS={specs} -DSPECPASSES={specPasses} -a m.pml", dir);
            Exec("gcc", (optimize ? "-O2" : "-O0") + " -w -DSAFETY -DMEMLIM=2048 -o pan pan.c", dir);
            var sw = Stopwatch.StartNew();
            string output = Exec(Path.Combine(dir, "pan"), "-m100000 -E", dir, allowFail: true);
            sw.Stop();
            bool violation = ErrorsRegex().Match(output) is { Success: true } m && int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) > 0;
            long states = StatesRegex().Match(output) is { Success: true } s ? long.Parse(s.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
            double secs = TimeRegex().Match(output) is { Success: true } t ? double.Parse(t.Groups[1].Value, CultureInfo.InvariantCulture) : sw.Elapsed.TotalSeconds;
            return new SpinResult(violation, states, secs, output);
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    private static string Exec(string file, string args, string dir, bool allowFail = false)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        Process? started;
        try { started = Process.Start(psi); }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run {file} ({e.Message}): Spin and gcc are required (Debian packages spin and gcc; scripts/install-deps.sh installs them)", e);
        }
        using var p = started ?? throw new InvalidOperationException($"cannot start {file}");
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 && !allowFail)
            throw new InvalidOperationException($"{file} {args} failed ({p.ExitCode}): {output}{err.Result}");
        return output + err.Result;
    }

    [GeneratedRegex(@"errors:\s*(\d+)")]
    private static partial Regex ErrorsRegex();

    [GeneratedRegex(@"([\d.e+]+)\s+states, stored")]
    private static partial Regex StatesRegex();

    [GeneratedRegex(@"pan: elapsed time ([\d.e+-]+) seconds")]
    private static partial Regex TimeRegex();

    public sealed record BenchResult(ExplorationResult OneThread, ExplorationResult AllCores, SpinResult Spin, Scenario Scenario)
    {
        private string Ratio(ExplorationResult r) =>
            (Spin.StatesPerSecond > 0 ? r.StatesPerSecond / Spin.StatesPerSecond : double.NaN).ToString("F2", CultureInfo.InvariantCulture);

        public override string ToString() =>
            $"core model, exhaustive search: {Scenario.Summary}\n" +
            $"  mmcheck, 1 thread:   {OneThread.States:N0} states in {OneThread.Elapsed.TotalSeconds:F3} s = {OneThread.StatesPerSecond:N0} states/s ({OneThread.Mode})\n" +
            $"  mmcheck, {Environment.ProcessorCount} threads:  {AllCores.States:N0} states in {AllCores.Elapsed.TotalSeconds:F3} s = {AllCores.StatesPerSecond:N0} states/s\n" +
            $"  spin (pan, 1 core):  {Spin.States:N0} states in {Spin.Seconds:F3} s = {Spin.StatesPerSecond:N0} states/s (pan -DSAFETY, gcc -O2)\n" +
            $"  ratio mmcheck/spin in states/s: {Ratio(OneThread)} on one thread, {Ratio(AllCores)} on all cores";
    }

    /// <summary>One run of each on the safe (fixed) core model grown with speculative lookups, so all explore everything.</summary>
    public static BenchResult Run(string promela, TextWriter? log, int rounds = 2, int specs = 3, int specPasses = 3)
    {
        var sc = CoreScenario(rounds, fix: true, specs, specPasses);
        log?.WriteLine($"mmcheck: bench: running mmcheck on {sc.Summary}");
        var one = new DfsExplorer(sc.Build, new ExploreOptions { MaxSteps = sc.MaxSteps, Threads = 1 }).Run();
        var all = new DfsExplorer(sc.Build, new ExploreOptions { MaxSteps = sc.MaxSteps }).Run();
        log?.WriteLine("mmcheck: bench: running spin on " + promela);
        var spin = RunSpin(promela, rounds, fix: true, specs, specPasses);
        return new BenchResult(one, all, spin, sc);
    }
}
