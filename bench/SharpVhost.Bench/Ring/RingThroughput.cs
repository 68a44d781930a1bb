using System.Diagnostics;
using SharpVhost.Interop;
using SharpVhost.Memory;
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
    public double DirectMedian => Median(Direct);
    public double CheckedMedian => Median(Checked);
    /// <summary>Direct over Checked: 1.25 means the direct accessor moves 25 % more chains per second.</summary>
    public double Ratio => DirectMedian / CheckedMedian;

    private static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN
            : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2]
            : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

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
    private const ulong GpaBase = 0x1_0000_0000, UvaDelta = 0x7e00_0000_0000;

    /// <summary>Runs one accessor for about <paramref name="duration"/>; returns chains per second.</summary>
    /// <param name="regions">How many regions guest memory is split into (the rings sit in the last one).</param>
    public static double Run(MetadataAccess access, int queueSize, int batch, TimeSpan duration, int regions = 1)
    {
        if (!SplitRingLayout.IsValidQueueSize(queueSize)) throw new ArgumentOutOfRangeException(nameof(queueSize));
        if (batch < 1 || batch > queueSize) throw new ArgumentOutOfRangeException(nameof(batch));
        if (regions < 1 || regions > 64) throw new ArgumentOutOfRangeException(nameof(regions));
        const ulong regionSize = 1 << 20;
        ulong size = regionSize * (ulong)regions;
        using var fd = FileDescriptors.CreateMemfd("ring-bench", (long)size);
        using var driverRegion = MemoryRegion.Map(fd, new RegionDescription(GpaBase, size, GpaBase + UvaDelta, 0));
        var driverView = GuestMemory.Create([driverRegion], null, 0);
        using var domain = new GuestMemoryDomain();
        domain.ReplaceAll(Enumerable.Range(0, regions).Select(i =>
        {
            ulong gpa = GpaBase + (ulong)i * regionSize;
            return MemoryRegion.Map(fd, new RegionDescription(gpa, regionSize, gpa + UvaDelta, (ulong)i * regionSize));
        }).ToArray());

        ulong ringBase = GpaBase + size - regionSize;
        var placement = SplitRingPlacement.At(ringBase, queueSize);
        ulong data = ringBase + 0x10000;
        var driver = new SplitDriverQueue(driverView, placement, queueSize, eventIndex: true);
        var device = new SplitQueue(0, access) { EventIndex = true };
        device.SetSize(queueSize);
        device.SetRings(new RingAddresses(placement.Descriptors + UvaDelta, placement.Avail + UvaDelta, placement.Used + UvaDelta));
        var chain = new DescriptorChain();
        using var reader = domain.RegisterReader();
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
