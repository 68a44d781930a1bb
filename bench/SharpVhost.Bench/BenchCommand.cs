using System.CommandLine;
using System.Globalization;
using SharpVhost.Bench.Report;
using Spectre.Console;

namespace SharpVhost.Bench;

/// <summary>
/// <c>sharpvhost-bench</c> (run as <c>./sharpvhost bench</c>): the side-by-side benchmarks against
/// qemu-storage-daemon, DPDK and the hardware floor (issue 7). Prints a table of medians, ratios and
/// targets; marks the ones that fall short. Our backend runs as a separate program, <c>--sharpvhost</c>.
/// </summary>
internal static class BenchCommand
{
    public static RootCommand Create()
    {
        var quick = new Option<bool>("--quick") { Description = "Smoke run: one short repetition of every comparison" };
        var json = new Option<string?>("--json") { Description = "Write the full report (every sample, the machine, the peers' versions) as JSON" };
        var only = new Option<string?>("--only") { Description = "Run only the comparisons whose name contains this: " + string.Join(", ", BenchRunner.All.Select(c => c.Name)) };
        var chart = new Option<string?>("--chart") { Description = "Write a PNG chart of the ratios against their targets" };
        var markdown = new Option<string?>("--markdown") { Description = "Write the table as Markdown (for docs/benchmarks.md)" };
        var repetitions = new Option<int?>("--repetitions") { Description = "Repetitions per comparison (default 5, 1 with --quick)" };
        var seconds = new Option<double?>("--seconds") { Description = "Seconds per measurement (default 1, 0.2 with --quick)" };
        var backend = new Option<string?>("--sharpvhost") { Description = "The backend program to measure (the NativeAOT binary or the JIT CLI; default: sharpvhost next to this program)" };
        var command = new RootCommand("Benchmark SharpVhost side by side with qemu-storage-daemon, DPDK testpmd and the hardware floor")
        {
            quick, json, only, chart, markdown, repetitions, seconds, backend,
        };
        command.SetAction(parse =>
        {
            var options = new BenchOptions
            {
                Quick = parse.GetValue(quick), Only = parse.GetValue(only), Repetitions = parse.GetValue(repetitions), Seconds = parse.GetValue(seconds),
            };
            if (!BenchRunner.Select(options.Only).Any())
            {
                Console.Error.WriteLine($"sharpvhost bench: no comparison matches '{options.Only}'");
                return 2;
            }
            var self = parse.GetValue(backend) is { } program ? SharpVhostCommand.FromProgram(program) : SharpVhostCommand.FromDirectory(AppContext.BaseDirectory);
            Console.Error.WriteLine($"sharpvhost-bench: measuring {string.Join(' ', self.Args().Prepend(self.Program))} ({self.Kind})");
            var report = BenchRunner.Run(options, self, message => Console.Error.WriteLine(message));
            Print(report);
            if (parse.GetValue(json) is { } jsonPath) { BenchJson.Write(report, jsonPath); AnsiConsole.MarkupLine($"report written to [blue]{Markup.Escape(jsonPath)}[/]"); }
            if (parse.GetValue(markdown) is { } mdPath) { File.WriteAllText(mdPath, BenchMarkdown.Write(report)); AnsiConsole.MarkupLine($"table written to [blue]{Markup.Escape(mdPath)}[/]"); }
            if (parse.GetValue(chart) is { } chartPath) { BenchChart.Write(report, chartPath); AnsiConsole.MarkupLine($"chart written to [blue]{Markup.Escape(chartPath)}[/]"); }
            return report.Comparisons.Any(c => c.Error is not null) ? 1 : 0;
        });
        return command;
    }

    private static void Print(BenchReport report)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 200; // a log or a pipe: do not wrap the table at 80 columns
        var m = report.Machine;
        AnsiConsole.MarkupLine($"[bold]SharpVhost bench[/] {report.StartedUtc:yyyy-MM-dd HH:mm} UTC{(report.Quick ? " (quick)" : "")}: " +
            Markup.Escape($"{m.CpuModel}, {m.Cpus} CPUs ({m.Hypervisor}), kernel {m.Kernel}, {m.Runtime}; load average at start {m.LoadAverage}"));
        AnsiConsole.MarkupLine(Markup.Escape($"peers: {m.QemuStorageDaemon}; {m.Dpdk}. Medians of {report.Repetitions} alternating repetition(s), {report.MeasureSeconds:0.##} s each."));
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumns("comparison", "case", "metric", "ours", "peer", "ratio", "target", "");
        foreach (var c in report.Comparisons)
        {
            foreach (var r in c.Rows)
            {
                string status = r.MeetsTarget switch { true => "[green]ok[/]", false => "[red]short[/]", null => "" };
                string target = r.Target is { } t ? (r.Better == Better.Higher ? "≥ " : "≤ ") + t.ToString("0.0#", CultureInfo.InvariantCulture) + "x" : "";
                table.AddRow(Markup.Escape(c.Name), Markup.Escape(r.Case), Markup.Escape($"{r.Metric} ({r.Unit})"), Format(r.Ours), Format(r.PeerValue) + $" [dim]{Markup.Escape(r.Peer)}[/]",
                    double.IsNaN(r.Ratio) ? "-" : r.Ratio.ToString("0.00", CultureInfo.InvariantCulture) + "x", target, status);
            }
            foreach (var u in c.Unavailable)
                table.AddRow(Markup.Escape(c.Name), Markup.Escape(u.Case), "", "[yellow]not available[/]", Markup.Escape(u.Reason), "", "", "");
            if (c.Error is not null)
                table.AddRow(Markup.Escape(c.Name), "", "", "[red]failed[/]", Markup.Escape(c.Error.Split('\n')[0]), "", "", "");
        }
        AnsiConsole.Write(table);
        foreach (var c in report.Comparisons.Where(c => c.Pinning != ""))
            AnsiConsole.MarkupLine($"[dim]{Markup.Escape(c.Name)} pinning: {Markup.Escape(c.Pinning)}[/]");
        foreach (var c in report.Comparisons)
            foreach (var note in c.Notes) AnsiConsole.MarkupLine($"[dim]{Markup.Escape(c.Name)}: {Markup.Escape(note)}[/]");
        int shortCount = report.Comparisons.Sum(c => c.Rows.Count(r => r.MeetsTarget == false));
        int withTarget = report.Comparisons.Sum(c => c.Rows.Count(r => r.MeetsTarget is not null));
        AnsiConsole.MarkupLine(shortCount == 0 ? $"[green]all {withTarget} lines with a target meet it[/]" : $"[red]{shortCount} of {withTarget} lines with a target fall short[/]");
    }

    private static string Format(double value) => double.IsNaN(value) ? "-"
        : Math.Abs(value) >= 1000 ? value.ToString("N0", CultureInfo.InvariantCulture)
        : value.ToString("0.0#", CultureInfo.InvariantCulture);
}
