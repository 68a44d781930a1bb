using SharpVhost.Bench.Report;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// Comparison 1: the direct ring-metadata accessor against the checked one, same device, same load.
/// Block: `sharpvhost blk --null 1G` at queue depth 32 driven by our frontend. Net: `sharpvhost net
/// --sink` under DPDK virtio_user txonly. Target: direct at least 1.3x checked (the kernel series saw 1.22-1.24x).
/// </summary>
public sealed class MetadataAccessComparison : IComparison
{
    public const double Target = 1.3;

    public string Name => "metadata";
    public string Title => "Metadata accessors: direct vs checked (same backend, same load)";

    public void Run(BenchContext context, ComparisonResult result)
    {
        result.Pinning = context.Cpus.Describe("frontend (our block frontend in this process / testpmd forwarding lcore)", "sharpvhost backend");
        const long bytes = 1L << 30;
        var rows = new RowBuilder("checked accessor");
        {
            var direct = BlockBackendSpec.Ours(context.Self, context.SocketPath("blk-direct"), BlockStorageKind.Null, bytes, "direct");
            var @checked = BlockBackendSpec.Ours(context.Self, context.SocketPath("blk-checked"), BlockStorageKind.Null, bytes, "checked");
            using var d = RunningBlockBackend.Start(direct, context.Cpus.BackendCpu, 32, 4096);
            using var c = RunningBlockBackend.Start(@checked, context.Cpus.BackendCpu, 32, 4096);
            foreach (var op in new[] { BlockOperation.RandomRead, BlockOperation.RandomWrite })
            {
                var load = new BlockLoadSpec(op, 4096, 32, bytes, context.Options.Warmup, context.Options.Measure);
                for (int rep = 0; rep < context.Repetitions; rep++)
                {
                    BlockLoadResult? o = null, p = null;
                    foreach (bool directTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
                    {
                        if (directTurn) o = d.Run(load); else p = c.Run(load);
                    }
                    context.Log($"  block null {load.Label}: direct {o!.Iops:N0} IOPS, checked {p!.Iops:N0} IOPS");
                    rows.Add($"block null {load.Label}", "IOPS", "IOPS", Better.Higher, Target, o.Iops, p.Iops);
                }
            }
        }
        // Busy-polling backends: no kicks, so the ring work itself is a larger share of the cost. A polling
        // backend spins whenever a frontend is connected, so each measurement starts its own backend.
        var busyLoad = new BlockLoadSpec(BlockOperation.RandomRead, 4096, 32, bytes, context.Options.Warmup * 2, context.Options.Measure);
        for (int rep = 0; rep < context.Repetitions; rep++)
        {
            BlockLoadResult? o = null, p = null;
            foreach (bool directTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
            {
                var spec = BlockBackendSpec.Ours(context.Self, context.SocketPath("blk-poll"), BlockStorageKind.Null, bytes, directTurn ? "direct" : "checked", busyPoll: true);
                using var backend = RunningBlockBackend.Start(spec, context.Cpus.BackendCpu, 32, 4096);
                var r = backend.Run(busyLoad);
                if (directTurn) o = r; else p = r;
            }
            context.Log($"  block null busy-poll {busyLoad.Label}: direct {o!.Iops:N0} IOPS, checked {p!.Iops:N0} IOPS");
            rows.Add($"block null busy-poll {busyLoad.Label}", "IOPS", "IOPS", Better.Higher, Target, o.Iops, p.Iops);
        }
        if (NetComparisons.Unavailable(context) is { } why)
            result.Unavailable.Add(new UnavailableRow("net sink, 64 B txonly", why));
        else
            NetComparisons.Compare(context, result, rows, "net sink 64 B txonly", "txonly", receive: false,
                s => NetComparisons.StartOurNet(context, s, "sink", "direct"), s => NetComparisons.StartOurNet(context, s, "sink", "checked"), Target);
        rows.AddTo(result);
    }
}
