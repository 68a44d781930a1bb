using System.Globalization;
using System.Text;

namespace SharpVhost.Bench.Report;

/// <summary>The report as Markdown: the machine, then one table row per measured or unavailable line (for docs/benchmarks.md).</summary>
public static class BenchMarkdown
{
    public static string Write(BenchReport report)
    {
        var m = report.Machine;
        var s = new StringBuilder();
        s.AppendLine($"Run {report.StartedUtc:yyyy-MM-dd HH:mm} UTC{(report.Quick ? " (quick)" : "")} on {m.CpuModel}, {m.Cpus} CPUs ({m.Hypervisor}), " +
            $"kernel {m.Kernel}, {m.Runtime}; {m.QemuStorageDaemon}; {m.Dpdk}. Load average at start: {m.LoadAverage}. " +
            $"Medians of {report.Repetitions} alternating repetitions of {report.MeasureSeconds.ToString("0.##", CultureInfo.InvariantCulture)} s.");
        s.AppendLine();
        s.AppendLine("| comparison | case | metric | ours | peer | ratio | target | |");
        s.AppendLine("|---|---|---|--:|--:|--:|--:|---|");
        foreach (var c in report.Comparisons)
        {
            foreach (var r in c.Rows)
            {
                string target = r.Target is { } t ? (r.Better == Better.Higher ? "≥ " : "≤ ") + t.ToString("0.0#", CultureInfo.InvariantCulture) + "x" : "";
                string status = r.MeetsTarget switch { true => "ok", false => "**short**", null => "" };
                s.AppendLine($"| {c.Name} | {r.Case} | {r.Metric} ({r.Unit}) | {Format(r.Ours)} | {Format(r.PeerValue)} ({r.Peer}) | " +
                    $"{(double.IsNaN(r.Ratio) ? "-" : r.Ratio.ToString("0.00", CultureInfo.InvariantCulture) + "x")} | {target} | {status} |");
            }
            foreach (var u in c.Unavailable) s.AppendLine($"| {c.Name} | {u.Case} | | not available | {u.Reason} | | | |");
            if (c.Error is not null) s.AppendLine($"| {c.Name} | | | failed | {c.Error.Split('\n')[0]} | | | |");
        }
        s.AppendLine();
        foreach (var c in report.Comparisons.Where(c => c.Pinning != "")) s.AppendLine($"- {c.Name} pinning: {c.Pinning}");
        foreach (var c in report.Comparisons) foreach (var n in c.Notes) s.AppendLine($"- {c.Name}: {n}");
        return s.ToString();
    }

    private static string Format(double value) => double.IsNaN(value) ? "-"
        : Math.Abs(value) >= 1000 ? value.ToString("N0", CultureInfo.InvariantCulture)
        : value.ToString("0.0#", CultureInfo.InvariantCulture);
}
