using System.Diagnostics;
using SharpVhost.Bench.Comparisons;
using SharpVhost.Bench.Report;
using SharpVhost.Interop;

namespace SharpVhost.Bench;

/// <summary>
/// Runs the selected comparisons one after the other with this process's threads pinned to the
/// frontend CPU, and collects the report. A comparison that fails is recorded with its error; the
/// others still run. Every process and file a comparison starts is gone when it returns.
/// </summary>
public static class BenchRunner
{
    /// <summary>Every comparison, in the order they run.</summary>
    public static IReadOnlyList<IComparison> All { get; } =
    [
        new MetadataAccessComparison(),
        new RingMicroComparison(),
        new NetComparisons.NetReceive(),
        new NetComparisons.NetTransmit(),
        new BlockComparison(),
        new StorageComparison(),
        new FloorComparison(),
#if HAS_NET_CLIENT
        new NetFrontendComparison(),
#else
        new NetComparisons.NetFrontend(),
#endif
        new FootprintComparison(),
    ];

    public static IEnumerable<IComparison> Select(string? only)
        => All.Where(c => only is null || c.Name.Contains(only, StringComparison.OrdinalIgnoreCase));

    public static BenchReport Run(BenchOptions options, SharpVhostCommand self, Action<string> log, Action<ComparisonResult>? finished = null)
    {
        var cpus = CpuPlan.ForThisMachine();
        var report = new BenchReport
        {
            Machine = MachineInfo.Collect(),
            StartedUtc = DateTime.UtcNow,
            Quick = options.Quick,
            Repetitions = options.EffectiveRepetitions,
            MeasureSeconds = options.Measure.TotalSeconds,
        };
        string work = Directory.CreateTempSubdirectory("sharpvhost-bench-").FullName;
        ThreadAffinity.PinProcess(cpus.FrontendCpu);
        try
        {
            var context = new BenchContext(options, cpus, self, work, log);
            foreach (var comparison in Select(options.Only))
            {
                var result = new ComparisonResult(comparison.Name, comparison.Title);
                log($"{comparison.Name}: {comparison.Title}");
                var clock = Stopwatch.StartNew();
                try
                {
                    comparison.Run(context, result);
                }
                catch (Exception e)
                {
                    result.Error = e.Message;
                    log($"{comparison.Name} failed: {e}");
                }
                result.Seconds = clock.Elapsed.TotalSeconds;
                report.Comparisons.Add(result);
                finished?.Invoke(result);
            }
        }
        finally
        {
            ThreadAffinity.UnpinProcess();
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
        return report;
    }
}
