using System.Diagnostics;
using SharpVhost.Virtio;

namespace SharpVhost.Bench.Ring;

/// <summary>One packed-vs-split comparison: medians of alternating runs, in chains per CPU second.</summary>
public sealed record RingLayoutComparison(
    MetadataAccess Access,
    int QueueSize,
    int Batch,
    int DescriptorsPerChain,
    TimeSpan Each,
    IReadOnlyList<double> Split,
    IReadOnlyList<double> Packed)
{
    public double SplitMedian => Stats.Median(Split);
    public double PackedMedian => Stats.Median(Packed);
    /// <summary>Packed over split: 1.10 means the packed ring moves 10 % more chains per second.</summary>
    public double Ratio => PackedMedian / SplitMedian;

    public override string ToString()
        => $"{Access} accessor, queue {QueueSize}, batch {Batch}, {DescriptorsPerChain} descriptor(s) per chain, {Split.Count} x {Each.TotalMilliseconds:0} ms each: " +
           $"split {SplitMedian / 1e6:0.00} M/s, packed {PackedMedian / 1e6:0.00} M/s, packed/split {Ratio:0.000} ({(Ratio - 1) * 100:+0.0;-0.0} %)";
}

/// <summary>
/// Packed vs split ring micro-benchmark from one run: our driver and a null device on one thread
/// over a real memfd mapping, moving chains through the ring (add, publish, kick check, pop, used,
/// flush, interrupt check, kick re-enable, reap), the device inside a memory read section as a
/// worker would. Runs of the two layouts alternate so that drift hits both alike; the ratio is of
/// medians. One thread measures the ring code's own cost, not the cache-line traffic between two
/// cores that the packed layout also saves.
/// </summary>
public static class PackedRingThroughput
{
    private const ulong MemorySize = 1 << 20;

    public static RingLayoutComparison Compare(MetadataAccess access, int queueSize = 256, int batch = 32, int descriptorsPerChain = 1,
        TimeSpan? each = null, int rounds = 5)
    {
        var duration = each ?? TimeSpan.FromMilliseconds(500);
        // Long enough for tiered compilation to settle on its final code for both layouts, and page-in.
        Run(packed: false, access, queueSize, batch, descriptorsPerChain, TimeSpan.FromSeconds(1));
        Run(packed: true, access, queueSize, batch, descriptorsPerChain, TimeSpan.FromSeconds(1));
        var split = new List<double>();
        var packed = new List<double>();
        for (int i = 0; i < rounds; i++)
        {
            split.Add(Run(packed: false, access, queueSize, batch, descriptorsPerChain, duration));
            packed.Add(Run(packed: true, access, queueSize, batch, descriptorsPerChain, duration));
        }
        return new RingLayoutComparison(access, queueSize, batch, descriptorsPerChain, duration, split, packed);
    }

    /// <summary>Runs one layout for about <paramref name="duration"/>; returns chains per second of CPU time used.</summary>
    public static double Run(bool packed, MetadataAccess access, int queueSize, int batch, int descriptorsPerChain, TimeSpan duration)
    {
        if (!SplitRingLayout.IsValidQueueSize(queueSize)) throw new ArgumentOutOfRangeException(nameof(queueSize), "both layouts need it: a power of two");
        if (descriptorsPerChain < 1 || descriptorsPerChain > 4 || batch < 1 || batch * descriptorsPerChain > queueSize)
            throw new ArgumentOutOfRangeException(nameof(batch), "a batch of chains must fit the ring");
        using var setup = new RingBenchMemory("ring-layout-bench", MemorySize);
        var reader = setup.Reader;
        var (driver, device) = packed
            ? ((IDriverQueue, IDeviceQueue))setup.CreatePacked(RingBenchMemory.GpaBase, queueSize, access)
            : setup.CreateSplit(RingBenchMemory.GpaBase, queueSize, access);

        // Header-like readable buffers and a writable status byte, as block requests look.
        ulong data = RingBenchMemory.GpaBase + 0x10000;
        Span<DriverBuffer> buffers = stackalloc DriverBuffer[descriptorsPerChain];
        for (int i = 0; i < descriptorsPerChain; i++)
            buffers[i] = new DriverBuffer(data + (ulong)i * 4096, i == descriptorsPerChain - 1 ? 1u : 512u, i == descriptorsPerChain - 1);
        var chain = new DescriptorChain();

        long chains = 0, sink = 0;
        var process = Process.GetCurrentProcess();
        var cpuStart = process.TotalProcessorTime;
        long start = Stopwatch.GetTimestamp();
        long deadline = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long now;
        do
        {
            for (int i = 0; i < 16; i++)
            {
                for (int b = 0; b < batch; b++)
                    if (!driver.TryAdd(buffers, out _)) throw new InvalidOperationException("ring full: the device fell behind");
                driver.Publish();
                if (driver.NeedsKick()) sink++;

                var memory = reader.Enter();
                try
                {
                    if (!device.Attach(memory)) throw new InvalidOperationException(device.BrokenReason);
                    device.DisableKicks();
                    while (device.TryPop(chain)) device.AddUsed(chain, 1);
                    device.FlushUsed();
                    if (device.ShouldInterrupt()) sink++;
                    if (device.EnableKicks()) sink++;
                }
                finally
                {
                    reader.Exit();
                }
                if (device.IsBroken) throw new InvalidOperationException(device.BrokenReason);

                while (driver.TryGetUsed(out _, out uint length)) { chains++; sink += length; }
                driver.EnableInterrupts();
            }
            now = Stopwatch.GetTimestamp();
        } while (now < deadline);
        GC.KeepAlive(sink);
        process.Refresh();
        double cpuSeconds = (process.TotalProcessorTime - cpuStart).TotalSeconds;
        double wallSeconds = (now - start) / (double)Stopwatch.Frequency;
        // Per CPU second: on shared, loaded cores the wall clock mostly measures the scheduler.
        return chains / (cpuSeconds > 0 ? Math.Min(cpuSeconds, wallSeconds) : wallSeconds);
    }
}
