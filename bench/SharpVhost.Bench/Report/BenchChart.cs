using System.Globalization;
using ScottPlot;

namespace SharpVhost.Bench.Report;

/// <summary>
/// The chart for docs/benchmarks.md: one horizontal bar per measured line showing ours/peer on a log2
/// scale (right of 1x: ours is larger), green when it meets its target, red when it falls short, grey
/// without a target; a black mark at each target. Ratios beyond 64x either way are drawn at the edge.
/// </summary>
public static class BenchChart
{
    private const double Limit = 6; // log2: 1/64x .. 64x

    public static void Write(BenchReport report, string path)
    {
        var rows = report.Comparisons.SelectMany(c => c.Rows.Select(r => (Comparison: c.Name, Row: r)))
            .Where(x => double.IsFinite(x.Row.Ratio) && x.Row.Ratio > 0).ToList();
        var plot = new Plot();
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        var targetX = new List<double>();
        var targetY = new List<double>();
        for (int i = 0; i < rows.Count; i++)
        {
            var (comparison, row) = rows[i];
            double position = rows.Count - 1 - i; // first row at the top
            double value = Math.Clamp(Math.Log2(row.Ratio), -Limit, Limit);
            var color = row.MeetsTarget switch { true => Colors.SeaGreen, false => Colors.IndianRed, null => Colors.Gray };
            bars.Add(new Bar
            {
                Position = position, Value = value, ValueBase = 0, FillColor = color, LineWidth = 0, Orientation = Orientation.Horizontal,
                Label = row.Ratio.ToString(row.Ratio >= 10 ? "0" : "0.00", CultureInfo.InvariantCulture) + "x",
            });
            ticks.Add(new Tick(position, $"{comparison}: {row.Case}, {row.Metric}"));
            if (row.Target is { } t)
            {
                targetX.Add(Math.Log2(t));
                targetY.Add(position);
            }
        }
        var barPlot = plot.Add.Bars(bars);
        barPlot.ValueLabelStyle.FontSize = 11;
        if (targetX.Count > 0)
        {
            var marks = plot.Add.ScatterPoints(targetX.ToArray(), targetY.ToArray());
            marks.MarkerShape = MarkerShape.VerticalBar;
            marks.MarkerSize = 14;
            marks.MarkerLineWidth = 3;
            marks.Color = Colors.Black;
            marks.LegendText = "target";
        }
        var one = plot.Add.VerticalLine(0);
        one.Color = Colors.Black.WithAlpha(0.5);
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Left.MajorTickStyle.Length = 0;
        var xTicks = Enumerable.Range((int)-Limit, 2 * (int)Limit + 1)
            .Select(e => new Tick(e, e >= 0 ? $"{1 << e}x" : $"1/{1 << -e}x")).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(xTicks);
        plot.Axes.Bottom.Label.Text = "ours / peer, log scale (rates: right is better; latency, time, memory: left is better)";
        plot.Axes.Title.Label.Text = $"SharpVhost vs peers, {report.StartedUtc:yyyy-MM-dd HH:mm} UTC, {report.Machine.CpuModel}, {report.Machine.Cpus} CPUs";
        plot.Axes.SetLimitsX(-Limit - 0.5, Limit + 0.5);
        plot.Axes.SetLimitsY(-1, rows.Count);
        plot.SavePng(path, 1300, 140 + 24 * Math.Max(1, rows.Count));
    }
}
