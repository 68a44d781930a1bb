using ScottPlot;

namespace SharpVhost.Bench.Report;

/// <summary>
/// The chart for docs/benchmarks.md: one horizontal bar per measured line showing ours/peer, green when
/// it meets its target, red when it falls short, grey without a target; a black mark at each target.
/// </summary>
public static class BenchChart
{
    public static void Write(BenchReport report, string path)
    {
        var rows = report.Comparisons.SelectMany(c => c.Rows.Select(r => (Comparison: c.Name, Row: r)))
            .Where(x => !double.IsNaN(x.Row.Ratio)).ToList();
        var plot = new Plot();
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        var targetX = new List<double>();
        var targetY = new List<double>();
        for (int i = 0; i < rows.Count; i++)
        {
            var (comparison, row) = rows[i];
            double position = rows.Count - 1 - i; // first row at the top
            var color = row.MeetsTarget switch { true => Colors.SeaGreen, false => Colors.IndianRed, null => Colors.Gray };
            bars.Add(new Bar { Position = position, Value = row.Ratio, FillColor = color, LineWidth = 0, Orientation = Orientation.Horizontal });
            ticks.Add(new Tick(position, $"{comparison}: {row.Case}, {row.Metric}"));
            if (row.Target is { } t)
            {
                targetX.Add(t);
                targetY.Add(position);
            }
        }
        plot.Add.Bars(bars);
        if (targetX.Count > 0)
        {
            var marks = plot.Add.ScatterPoints(targetX.ToArray(), targetY.ToArray());
            marks.MarkerShape = MarkerShape.VerticalBar;
            marks.MarkerSize = 14;
            marks.MarkerLineWidth = 3;
            marks.Color = Colors.Black;
            marks.LegendText = "target";
        }
        var one = plot.Add.VerticalLine(1.0);
        one.Color = Colors.Black.WithAlpha(0.4);
        one.LinePattern = LinePattern.Dashed;
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Left.MajorTickStyle.Length = 0;
        plot.Axes.Bottom.Label.Text = "ours / peer (higher is better for rates, lower for latency, time and memory)";
        plot.Axes.Title.Label.Text = $"SharpVhost vs peers, {report.StartedUtc:yyyy-MM-dd HH:mm} UTC, {report.Machine.CpuModel}, {report.Machine.Cpus} CPUs";
        plot.Axes.SetLimitsX(0, Math.Max(2.0, rows.Select(r => Math.Max(r.Row.Ratio, r.Row.Target ?? 0)).DefaultIfEmpty(1).Max() * 1.1));
        plot.Axes.SetLimitsY(-1, rows.Count);
        plot.Axes.Margins(left: 0);
        plot.SavePng(path, 1200, 120 + 24 * Math.Max(1, rows.Count));
    }
}
