using System.Text;
using System.Text.Json;
using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Model;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tool;

/// <summary>
/// One cell of the matrix: a strategy on a page kind against a concurrent operation. <see cref="Report"/>
/// checks all rules at once; <see cref="PerRule"/> holds, for each rule the model can break here, the
/// report of a check of that rule alone (so a short lost write does not hide a longer path to the BUG).
/// </summary>
public sealed record MatrixCell(Strategy Strategy, PageKind Page, string Column, CheckReport Report, IReadOnlyList<(Rule Rule, CheckReport Report)> PerRule);

/// <summary>
/// Every strategy against every page kind and concurrent operation. Each column is the operation plus
/// whatever it needs to matter: reclaim and O_DIRECT come with a writeback pass (someone must write the
/// page after it is re-dirtied), the speculative lookup with reclaim (whose refcount freeze it races),
/// SET_VRING_ADDR with migration (an invalidation that all page kinds see).
/// </summary>
public static class MatrixRunner
{
    public static readonly (string Name, OperationSpec[] Ops)[] Columns =
    [
        ("writeback", [new(OperationKind.Writeback, 2)]),
        ("reclaim", [new(OperationKind.Reclaim), new(OperationKind.Writeback)]),
        ("migration", [new(OperationKind.Migration)]),
        ("munmap", [new(OperationKind.Munmap)]),
        ("speculative", [new(OperationKind.Speculative), new(OperationKind.Reclaim)]),
        ("odirect", [new(OperationKind.ODirect), new(OperationKind.Writeback)]),
        ("oom-reaper", [new(OperationKind.OomReaper)]),
        ("set-vring-addr", [new(OperationKind.SetVringAddr), new(OperationKind.Migration)]),
    ];

    public static Scenario CellScenario(Strategy s, PageKind k, (string Name, OperationSpec[] Ops) col) => new()
    {
        Name = $"{Scenario.NameOf(s)}/{k.Name()}/{col.Name}",
        Strategy = s,
        Page = k,
        Rounds = 2,
        Operations = col.Ops,
        MaxSteps = 400,
    };

    public static List<MatrixCell> Run(CheckOptions options, TextWriter? progress)
    {
        var cells = new List<MatrixCell>();
        foreach (var k in Enum.GetValues<PageKind>())
            foreach (var (name, s) in Scenario.StrategyNames)
                foreach (var col in Columns)
                {
                    var sc = CellScenario(s, k, col);
                    var r = Checker.Check(sc, options);
                    var per = new List<(Rule, CheckReport)>();
                    if (r.Verdict == Verdict.Violation)
                        foreach (var rule in Enum.GetValues<Rule>())
                        {
                            var one = Checker.Check(sc with { Checks = new HashSet<Rule> { rule } }, options);
                            if (one.Verdict == Verdict.Violation) per.Add((rule, one));
                        }
                    var cell = new MatrixCell(s, k, col.Name, r, per);
                    cells.Add(cell);
                    progress?.WriteLine($"mmcheck matrix: {sc.Name}: {Cell(cell)} ({r.Search.States:N0} states)");
                }
        return cells;
    }

    public static string Abbrev(Rule r) => r switch
    {
        Rule.Ext4NoBuffersBug => "BUG",
        Rule.LostWrite => "LW",
        Rule.UseAfterFree => "UAF",
        Rule.InvalidateCounter => "CNT",
        Rule.SleepInNonblockingNotifier => "SLP",
        Rule.Deadlock => "DL",
        _ => "?",
    };

    /// <summary>"safe", or every rule broken with its shortest trace length, e.g. "LW11 BUG22".</summary>
    public static string Cell(MatrixCell c) =>
        c.Report.Verdict == Verdict.Safe
            ? (c.Report.Search.BoundHit ? "safe*" : "safe")
            : string.Join(" ", c.PerRule.Select(p => $"{Abbrev(p.Rule)}{p.Report.Counterexample.Trace.Count}"));

    public static string Text(List<MatrixCell> cells)
    {
        var sb = new StringBuilder();
        sb.AppendLine("mmcheck matrix: worker with 2 rounds. A cell lists each rule the model breaks with the length of its");
        sb.AppendLine("shortest trace in steps, or says safe (state space exhausted; safe* = within the step bound).");
        sb.AppendLine("BUG ext4-no-buffers-bug, LW lost-write, UAF use-after-free, CNT invalidate-counter, SLP sleep-in-notifier, DL deadlock");
        foreach (var k in Enum.GetValues<PageKind>())
        {
            sb.AppendLine();
            sb.AppendLine($"page kind: {k.Name()}");
            int w0 = Scenario.StrategyNames.Max(n => n.Name.Length) + 2;
            var widths = Columns.Select(c => Math.Max(c.Name.Length, cells.Where(x => x.Column == c.Name).Max(x => Cell(x).Length)) + 2).ToArray();
            sb.Append("strategy".PadRight(w0));
            for (int i = 0; i < Columns.Length; i++) sb.Append(Columns[i].Name.PadRight(widths[i]));
            sb.AppendLine();
            foreach (var (name, s) in Scenario.StrategyNames)
            {
                sb.Append(name.PadRight(w0));
                for (int i = 0; i < Columns.Length; i++)
                {
                    var c = cells.First(x => x.Strategy == s && x.Page == k && x.Column == Columns[i].Name);
                    sb.Append(Cell(c).PadRight(widths[i]));
                }
                sb.AppendLine();
            }
        }
        long states = cells.Sum(c => c.Report.Search.States);
        double secs = cells.Sum(c => c.Report.Search.Elapsed.TotalSeconds + (c.Report.Shortest?.Elapsed.TotalSeconds ?? 0));
        sb.AppendLine();
        sb.AppendLine($"{cells.Count} checks, {states:N0} states in the searches, {secs:F1} s");
        return sb.ToString();
    }

    public static string Json(List<MatrixCell> cells)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartArray();
            foreach (var c in cells)
            {
                w.WriteStartObject();
                w.WriteString("strategy", Scenario.NameOf(c.Strategy));
                w.WriteString("page", c.Page.Name());
                w.WriteString("operation", c.Column);
                w.WriteString("verdict", c.Report.Verdict == Verdict.Safe ? "safe" : "violation");
                if (c.Report.Verdict == Verdict.Violation)
                {
                    w.WriteString("rule", c.Report.Counterexample.Rule?.Name());
                    w.WriteNumber("trace_steps", c.Report.Counterexample.Trace.Count);
                    w.WriteStartObject("rules");
                    foreach (var (rule, rep) in c.PerRule) w.WriteNumber(rule.Name(), rep.Counterexample.Trace.Count);
                    w.WriteEndObject();
                }
                w.WriteNumber("states", c.Report.Search.States);
                w.WriteBoolean("bound_reached", c.Report.Search.BoundHit);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return Encoding.UTF8.GetString(ms.ToArray()) + "\n";
    }
}
