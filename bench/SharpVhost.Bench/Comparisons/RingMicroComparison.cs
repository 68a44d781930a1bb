using SharpVhost.Bench.Report;
using SharpVhost.Bench.Ring;
using SharpVhost.Virtio;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// The ring micro-benchmarks (bench/SharpVhost.Bench/Ring): the metadata accessors without any
/// notification or process boundary in the way. A driver and a null device on one thread move
/// one-descriptor chains through a split ring over a real memfd mapping; only the accessor differs.
/// Target as for comparison 1: direct at least 1.3x checked. Packed vs split has no target.
/// </summary>
public sealed class RingMicroComparison : IComparison
{
    public string Name => "ring";
    public string Title => "Ring micro-benchmarks: direct vs checked accessor, packed vs split layout (one thread, no notifications)";

    public void Run(BenchContext context, ComparisonResult result)
    {
        result.Pinning = $"one thread on CPU {context.Cpus.FrontendCpu} (driver and device alternate on it)";
        var rows = new RowBuilder("checked accessor");
        foreach (int regions in new[] { 1, 8 })
        {
            var comparison = RingThroughput.Compare(context.Repetitions, context.Options.Measure, queueSize: 256, batch: 32, regions: regions);
            context.Log($"  {comparison}");
            string @case = $"split ring, queue 256, batch 32, {regions} region{(regions == 1 ? "" : "s")}";
            for (int i = 0; i < Math.Min(comparison.Direct.Count, comparison.Checked.Count); i++)
                rows.Add(@case, "chains/s", "1/s", Better.Higher, MetadataAccessComparison.Target, comparison.Direct[i], comparison.Checked[i]);
        }
        rows.AddTo(result);

        // Packed vs split: the same one-thread loop through either layout (Ring/PackedRingThroughput.cs).
        var layout = PackedRingThroughput.Compare(MetadataAccess.Direct, queueSize: 256, batch: 32, descriptorsPerChain: 1,
            each: context.Options.Measure, rounds: context.Repetitions);
        context.Log($"  {layout}");
        var layoutRows = new RowBuilder("split ring");
        for (int i = 0; i < Math.Min(layout.Packed.Count, layout.Split.Count); i++)
            layoutRows.Add("packed ring, queue 256, batch 32, direct", "chains/s", "1/s", Better.Higher, null, layout.Packed[i], layout.Split[i]);
        layoutRows.AddTo(result);
    }
}
