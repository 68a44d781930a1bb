using System.Text;
using System.Text.Json;
using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Model;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tool;

/// <summary>One cell of the matrix: a strategy on a page kind against a concurrent operation.</summary>
public sealed record MatrixCell(Strategy Strategy, PageKind Page, string Column, CheckReport Report);

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
                    cells.Add(new MatrixCell(s, k, col.Name, r));
                    progress?.WriteLine($"mmcheck matrix: {sc.Name}: {Cell(r)} ({r.Search.States:N0} states)");
                }
        return cells;
    }

    public static string Cell(CheckReport r) =>
        r.Verdict == Verdict.Safe ? (r.Search.BoundHit ? "safe*" : "safe") : $"{r.Counterexample.Rule?.Name()} ({r.Counterexample.Trace.Count})";

    public static string Text(List<MatrixCell> cells)
    {
        var sb = new StringBuilder();
        sb.AppendLine("mmcheck matrix: worker with 2 rounds; cell = first rule broken on the shortest trace (its length in steps), or safe (state space exhausted; safe* = within the step bound)");
        foreach (var k in Enum.GetValues<PageKind>())
        {
            sb.AppendLine();
            sb.AppendLine($"page kind: {k.Name()}");
            int w0 = Scenario.StrategyNames.Max(n => n.Name.Length) + 2;
            var widths = Columns.Select(c => Math.Max(c.Name.Length, cells.Where(x => x.Column == c.Name).Max(x => Cell(x.Report).Length)) + 2).ToArray();
            sb.Append("strategy".PadRight(w0));
            for (int i = 0; i < Columns.Length; i++) sb.Append(Columns[i].Name.PadRight(widths[i]));
            sb.AppendLine();
            foreach (var (name, s) in Scenario.StrategyNames)
            {
                sb.Append(name.PadRight(w0));
                for (int i = 0; i < Columns.Length; i++)
                {
                    var c = cells.First(x => x.Strategy == s && x.Page == k && x.Column == Columns[i].Name);
                    sb.Append(Cell(c.Report).PadRight(widths[i]));
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
