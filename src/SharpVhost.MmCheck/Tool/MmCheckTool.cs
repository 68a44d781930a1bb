using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tool;

/// <summary>Exit codes of <c>sharpvhost mmcheck</c>.</summary>
public static class ExitCodes
{
    public const int Safe = 0;
    public const int Violation = 1;
    public const int BadScenario = 2;
}

/// <summary>What the <c>mmcheck</c> command was asked to do (parsed by the CLI).</summary>
public sealed record MmCheckRequest
{
    public string? ScenarioPath { get; init; }
    public bool Json { get; init; }
    public bool Matrix { get; init; }
    public bool BenchVsSpin { get; init; }
    public string? PromelaPath { get; init; }
    /// <summary>Also measure each pinner's race window (fewest foreign steps inside it) and the random-walk hit rate.</summary>
    public bool MeasureWindow { get; init; }
    public CheckOptions Options { get; init; } = new();
}

/// <summary>The tool behind the command: runs a scenario, the matrix or the Spin benchmark.</summary>
public static class MmCheckTool
{
    /// <summary>For every actor with a pin-to-dirty window: the fewest foreign steps that must fit in it to break a rule.</summary>
    public static string WindowReport(Scenario scenario)
    {
        var sb = new System.Text.StringBuilder();
        var m = scenario.Build();
        for (int i = 0; i < m.Actors.Count; i++)
        {
            var a = m.Actors[i];
            if (!a.HasDirtyWindow) continue;
            var w = WindowSearch.Measure(m, i);
            if (w is null) { sb.AppendLine($"window of {a.Name}: no rule can be broken"); continue; }
            sb.AppendLine($"window of {a.Name}: at least {w.ForeignSteps} steps of other CPUs must run while {a.Name} holds its pin and has not yet dirtied the page ({w.OwnWindowSteps} of its own steps there on that path):");
            ReportWriter.AppendTrace(sb, w.Trace);
        }
        double rate = WindowSearch.HitRate(scenario.Build, 20000, scenario.MaxSteps, 1);
        sb.AppendLine($"random scheduler: {rate:P2} of 20,000 random walks break a rule");
        return sb.ToString();
    }

    public static int Run(MmCheckRequest req, TextWriter stdout, TextWriter stderr)
    {
        if (req.BenchVsSpin)
        {
            var b = SpinBench.Run(req.PromelaPath ?? SpinBench.DefaultPromelaPath(), stderr);
            stdout.WriteLine(b.ToString());
            return ExitCodes.Safe;
        }
        if (req.Matrix)
        {
            var m = MatrixRunner.Run(req.Options with { OnProgress = null }, stderr);
            stdout.Write(req.Json ? MatrixRunner.Json(m) : MatrixRunner.Text(m));
            return m.Any(c => c.Report.Verdict == Verdict.Violation) ? ExitCodes.Violation : ExitCodes.Safe;
        }
        if (req.ScenarioPath is null)
        {
            stderr.WriteLine("mmcheck: give --scenario FILE, --matrix or --bench-vs-spin");
            return ExitCodes.BadScenario;
        }
        Scenario scenario;
        try { scenario = ScenarioParser.ParseFile(req.ScenarioPath); }
        catch (ScenarioException e)
        {
            stderr.WriteLine("mmcheck: bad scenario: " + e.Message);
            return ExitCodes.BadScenario;
        }
        var options = req.Options with
        {
            OnProgress = req.Options.OnProgress ?? (p => stderr.WriteLine($"mmcheck: {p.States:N0} states, depth {p.Depth}, {p.StatesPerSecond:N0} states/s")),
        };
        var report = Checker.Check(scenario, options);
        stdout.Write(req.Json ? ReportWriter.Json(report) + "\n" : ReportWriter.Text(report));
        if (req.MeasureWindow && !req.Json) stdout.Write(WindowReport(scenario));
        return report.Verdict == Verdict.Safe ? ExitCodes.Safe : ExitCodes.Violation;
    }
}
