using SharpVhost.Bench;
using SharpVhost.Bench.Report;
using Xunit.Abstractions;

namespace SharpVhost.Integration.Tests.Bench;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BenchCollection
{
    /// <summary>The bench pins this process's threads to one CPU while it runs: nothing else runs beside it.</summary>
    public const string Name = "bench (runs alone)";
}

/// <summary>
/// `sharpvhost bench --quick`: every comparison runs against its real peer and produces positive numbers
/// (or says why it is not available). No timing is asserted: the numbers' size is not the test's business.
/// </summary>
[Collection(BenchCollection.Name)]
public sealed class BenchSmokeTests(ITestOutputHelper output)
{
    private static readonly string[] MustMeasure = ["metadata", "ring", "block", "floor", "footprint"];

    [Fact]
    public async Task Quick_run_produces_numbers_for_every_comparison()
    {
        var self = SharpVhostCommand.FromDirectory(AppContext.BaseDirectory);
        var run = Task.Run(() => BenchRunner.Run(new BenchOptions { Quick = true }, self, output.WriteLine));
        var report = await run.WaitAsync(TimeSpan.FromMinutes(5));

        Assert.Equal(BenchRunner.All.Select(c => c.Name), report.Comparisons.Select(c => c.Name));
        foreach (var comparison in report.Comparisons)
        {
            Assert.True(comparison.Error is null, $"{comparison.Name} failed: {comparison.Error}");
            Assert.True(comparison.Rows.Count + comparison.Unavailable.Count > 0, $"{comparison.Name} reported nothing");
            foreach (var row in comparison.Rows)
            {
                Assert.True(row.Ours > 0 && double.IsFinite(row.Ours), $"{comparison.Name} {row.Case} {row.Metric}: ours = {row.Ours}");
                Assert.True(row.PeerValue > 0 && double.IsFinite(row.PeerValue), $"{comparison.Name} {row.Case} {row.Metric}: peer = {row.PeerValue}");
            }
            foreach (var missing in comparison.Unavailable)
                Assert.False(string.IsNullOrWhiteSpace(missing.Reason), $"{comparison.Name} {missing.Case}: no reason given");
        }
        foreach (var name in MustMeasure)
            Assert.NotEmpty(report.Comparisons.Single(c => c.Name == name).Rows);
        Assert.Contains("\"comparisons\"", BenchJson.Serialize(report));
    }
}
