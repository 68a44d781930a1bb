using SharpVhost.Bench.Floor;
using SharpVhost.Bench.Report;
using SharpVhost.Virtio;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// Comparison 5, the hardware floor: our split-ring handoff rate as a fraction of a minimal SPSC ring
/// pair between the same two CPUs (target 0.7), and 1 MiB sequential reads from our RAM disk through
/// our frontend as a fraction of memcpy bandwidth in 1 MiB blocks (target 0.8).
/// </summary>
public sealed class FloorComparison : IComparison
{
    public const double HandoffTarget = 0.7;
    public const double CopyTarget = 0.8;
    public const int ReadDepth = 8;

    public string Name => "floor";
    public string Title => "The floor: split-ring handoff vs a minimal SPSC ring; RAM-disk 1 MiB reads vs memcpy";

    public void Run(BenchContext context, ComparisonResult result)
    {
        var cpus = context.Cpus;
        result.Pinning = $"ring handoff: driver thread on CPU {cpus.FrontendCpu}, device thread on CPU {cpus.BackendCpu}; " +
            $"RAM disk: sharpvhost blk --ram on CPU {cpus.BackendCpu} (taskset), frontend on CPU {cpus.FrontendCpu}; memcpy on CPU {cpus.BackendCpu}";
        var duration = context.Options.Measure;
        var handoff = new RowBuilder("SPSC ring pair");
        for (int rep = 0; rep < context.Repetitions; rep++)
        {
            double? ours = null, floor = null;
            double? oursChecked = null;
            foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
            {
                if (oursTurn)
                {
                    ours = HandoffMeter.MeasureSplit(cpus.FrontendCpu, cpus.BackendCpu, duration, MetadataAccess.Direct);
                    oursChecked = HandoffMeter.MeasureSplit(cpus.FrontendCpu, cpus.BackendCpu, duration, MetadataAccess.Checked);
                }
                else floor = HandoffMeter.MeasureSpsc(cpus.FrontendCpu, cpus.BackendCpu, duration);
            }
            context.Log($"  handoff: split ring {ours:N0}/s (checked {oursChecked:N0}/s), SPSC {floor:N0}/s");
            handoff.Add($"ring handoff, {HandoffMeter.QueueSize} in flight", "round trips/s (direct)", "1/s", Better.Higher, HandoffTarget, ours, floor);
            handoff.Add($"ring handoff, {HandoffMeter.QueueSize} in flight", "round trips/s (checked)", "1/s", Better.Higher, null, oursChecked, floor);
        }
        handoff.AddTo(result);

        // Queue depth 1 with notifications: our null disk's median latency against two bare eventfd wake-ups.
        var wakeups = new RowBuilder("eventfd ping-pong");
        {
            var nullSpec = BlockBackendSpec.Ours(context.Self, context.SocketPath("null"), BlockStorageKind.Null, 1L << 30);
            using var nullDisk = RunningBlockBackend.Start(nullSpec, cpus.BackendCpu, 1, 4096);
            var qd1 = new BlockLoadSpec(BlockOperation.RandomRead, 4096, 1, 1L << 30, context.Options.Warmup, duration);
            for (int rep = 0; rep < context.Repetitions; rep++)
            {
                double? ours = null, floor = null;
                foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
                {
                    if (oursTurn) ours = nullDisk.Run(qd1).P50Microseconds;
                    else floor = WakeupMeter.MedianRoundTripMicroseconds(cpus.FrontendCpu, cpus.BackendCpu, duration);
                }
                context.Log($"  QD1 p50: null disk {ours:F1} us, eventfd round trip {floor:F1} us");
                wakeups.Add($"null {qd1.Label} vs two eventfd wake-ups", "p50 latency", "us", Better.Lower, null, ours, floor);
            }
        }
        wakeups.AddTo(result);

        long diskBytes = (context.Quick ? 64L : 256L) << 20;
        var copy = new RowBuilder("memcpy 1 MiB");
        var spec = BlockBackendSpec.Ours(context.Self, context.SocketPath("ram"), BlockStorageKind.Ram, diskBytes);
        using var disk = RunningBlockBackend.Start(spec, cpus.BackendCpu, ReadDepth, MemcpyMeter.BlockSize);
        BlockLoad.Fill(disk.Client, disk.Buffers[0], diskBytes);
        var load = new BlockLoadSpec(BlockOperation.SequentialRead, MemcpyMeter.BlockSize, ReadDepth, diskBytes, context.Options.Warmup, duration);
        for (int rep = 0; rep < context.Repetitions; rep++)
        {
            double? ours = null, floor = null;
            foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
            {
                if (oursTurn) ours = disk.Run(load).BytesPerSecond / (1 << 20);
                else floor = MemcpyMeter.MeasureBytesPerSecond(cpus.BackendCpu, diskBytes, ReadDepth, duration) / (1 << 20);
            }
            context.Log($"  1 MiB: RAM disk reads {ours:N0} MiB/s, memcpy {floor:N0} MiB/s");
            copy.Add($"RAM disk {load.Label}", "bandwidth", "MiB/s", Better.Higher, CopyTarget, ours, floor);
        }
        copy.AddTo(result);
    }
}
