using System.CommandLine;
using SharpVhost.MmCheck.Tool;

namespace SharpVhost.Cli.Commands;

/// <summary>`sharpvhost mmcheck`: parses options and hands them to <see cref="MmCheckTool"/>.</summary>
public static class MmCheckCommand
{
    public static Command Create()
    {
        var scenario = new Option<FileInfo?>("--scenario") { Description = "Scenario file to check (see scenarios/)" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var matrix = new Option<bool>("--matrix") { Description = "Run every strategy against every page kind and concurrent operation" };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Bound on the length of explored paths (overrides the scenario)" };
        var maxPreemptions = new Option<int?>("--max-preemptions") { Description = "Bound preemptions instead of using partial-order reduction" };
        var threads = new Option<int?>("--threads") { Description = "Explorer threads (default: all cores)" };
        var random = new Option<long?>("--random-walks") { Description = "Run this many random walks instead of the exhaustive search" };
        var seed = new Option<int>("--seed") { Description = "Seed for --random-walks", DefaultValueFactory = _ => 1 };
        var noPor = new Option<bool>("--no-por") { Description = "Turn the partial-order reduction off" };
        var bench = new Option<bool>("--bench-vs-spin") { Description = "Run the core model in mmcheck and in Spin's compiled verifier and print states/s of both" };
        var promela = new Option<FileInfo?>("--promela") { Description = "Promela file for --bench-vs-spin (default promela/core.pml)" };
        var window = new Option<bool>("--measure-window") { Description = "Also measure each pinner's race window in steps and the random-walk hit rate" };

        var cmd = new Command("mmcheck", "Explore an executable model of the Linux memory-management rules behind direct-mapped vring metadata");
        foreach (var o in new Option[] { scenario, json, matrix, maxSteps, maxPreemptions, threads, random, seed, noPor, bench, promela, window })
            cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var req = new MmCheckRequest
            {
                ScenarioPath = parse.GetValue(scenario)?.FullName,
                Json = parse.GetValue(json),
                Matrix = parse.GetValue(matrix),
                BenchVsSpin = parse.GetValue(bench),
                PromelaPath = parse.GetValue(promela)?.FullName,
                MeasureWindow = parse.GetValue(window),
                Options = new CheckOptions
                {
                    MaxSteps = parse.GetValue(maxSteps),
                    MaxPreemptions = parse.GetValue(maxPreemptions),
                    Threads = parse.GetValue(threads) ?? Environment.ProcessorCount,
                    RandomWalks = parse.GetValue(random),
                    Seed = parse.GetValue(seed),
                    PartialOrderReduction = !parse.GetValue(noPor),
                },
            };
            return MmCheckTool.Run(req, Console.Out, Console.Error);
        });
        return cmd;
    }
}
