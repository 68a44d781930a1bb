using System.Diagnostics;
using SharpVhost.Virtio;

namespace SharpVhost.Bench.Ring;

/// <summary>One Direct-vs-Checked comparison: medians of alternating runs, in round trips per second.</summary>
public sealed record RingComparison(
    int QueueSize,
    int Batch,
    int Regions,
    TimeSpan Each,
    IReadOnlyList<double> Direct,
    IReadOnlyList<double> Checked)
{
    public double DirectMedian => Stats.Median(Direct);
    public double CheckedMedian => Stats.Median(Checked);
    /// <summary>Direct over Checked: 1.25 means the direct accessor moves 25 % more chains per second.</summary>
    public double Ratio => DirectMedian / CheckedMedian;

    public override string ToString()
        => $"split ring, queue {QueueSize}, batch {Batch}, {Regions} region(s), {Direct.Count} x {Each.TotalMilliseconds:0} ms each: " +
           $"direct {DirectMedian / 1e6:0.00} M/s, checked {CheckedMedian / 1e6:0.00} M/s, ratio {Ratio:0.000} ({(Ratio - 1) * 100:+0.0;-0.0} %)";
}

/// <summary>
/// Ring throughput micro-benchmark: a driver and a null device on one thread over a real memfd mapping,
/// moving one-descriptor chains through a split ring (add, publish, pop, used, flush, interrupt check,
/// reap), with everything the device does inside a memory read section as a worker would. The only
/// difference between the two runs is the metadata accessor, so the ratio isolates what direct ring
/// pointers save over translate-and-check on every access (the kernel series measured +22 to +24 %).
/// </summary>
public static class RingThroughput
{
    /// <summary>Runs one accessor for about <paramref name="duration"/>; returns chains per second.</summary>
    /// <param name="regions">How many regions guest memory is split into (the rings sit in the last one).</param>
    public static double Run(MetadataAccess access, int queueSize, int batch, TimeSpan duration, int regions = 1)
    {
        if (!SplitRingLayout.IsValidQueueSize(queueSize)) throw new ArgumentOutOfRangeException(nameof(queueSize));
        if (batch < 1 || batch > queueSize) throw new ArgumentOutOfRangeException(nameof(batch));
        const ulong regionSize = 1 << 20;
        using var setup = new RingBenchMemory("ring-bench", regionSize, regions);
        ulong ringBase = RingBenchMemory.GpaBase + setup.Size - regionSize;
        ulong data = ringBase + 0x10000;
        var (driver, device) = setup.CreateSplit(ringBase, queueSize, access);
        var reader = setup.Reader;
        var chain = new DescriptorChain();
        Span<DriverBuffer> buffer = [new DriverBuffer(data, 64, false)];

        long ops = 0;
        long sink = 0;
        long deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long start = Stopwatch.GetTimestamp(), now;
        do
        {
            for (int i = 0; i < batch; i++) driver.TryAdd(buffer, out _);
            driver.Publish();
            if (driver.NeedsKick()) sink++;

            var memory = reader.Enter();
            device.Attach(memory);
            while (device.TryPop(chain))
            {
                sink += chain.ReadableBytes;
                device.AddUsed(chain.Id, 0);
            }
            device.FlushUsed();
            if (device.ShouldInterrupt()) sink++;
            if (device.EnableKicks()) sink++;
            reader.Exit();

            while (driver.TryGetUsed(out _, out _)) ops++;
            now = Stopwatch.GetTimestamp();
        } while (now < deadline);
        if (device.IsBroken) throw new InvalidOperationException("benchmark queue broke: " + device.BrokenReason);
        if (access == MetadataAccess.Direct && !device.UsingDirectAccess) throw new InvalidOperationException("direct accessor fell back");
        GC.KeepAlive(sink);
        return ops / ((double)(now - start) / Stopwatch.Frequency);
    }

    /// <summary>
    /// Alternates Direct and Checked runs (D, C, C, D, D, C, ...) so drift in machine load hits both
    /// equally, after one short warm-up of each; returns the per-run results and their medians.
    /// </summary>
    public static RingComparison Compare(int repetitions, TimeSpan each, int queueSize = 256, int batch = 32, int regions = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        var warmUp = TimeSpan.FromMilliseconds(Math.Min(200, each.TotalMilliseconds));
        Run(MetadataAccess.Direct, queueSize, batch, warmUp, regions);
        Run(MetadataAccess.Checked, queueSize, batch, warmUp, regions);
        var direct = new List<double>();
        var @checked = new List<double>();
        for (int i = 0; i < repetitions; i++)
        {
            bool directFirst = i % 2 == 0;
            foreach (var access in directFirst ? new[] { MetadataAccess.Direct, MetadataAccess.Checked } : [MetadataAccess.Checked, MetadataAccess.Direct])
                (access == MetadataAccess.Direct ? direct : @checked).Add(Run(access, queueSize, batch, each, regions));
        }
        return new RingComparison(queueSize, batch, regions, each, direct, @checked);
    }
}
