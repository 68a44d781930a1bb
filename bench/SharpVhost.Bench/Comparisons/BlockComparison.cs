using SharpVhost.Bench.Report;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// Comparison 4: our frontend driving `sharpvhost blk` and qemu-storage-daemon's vhost-user-blk export,
/// null storage and RAM storage, 4 KiB random reads and writes at queue depth 1 and 32.
/// Targets: at least 1.5x qemu-storage-daemon's IOPS, at most 0.8x its latency.
/// </summary>
public sealed class BlockComparison : IComparison
{
    public const double IopsTarget = 1.5;
    public const double LatencyTarget = 0.8;
    private const int BlockSize = 4096;

    public string Name => "block";
    public string Title => "Block: sharpvhost blk vs qemu-storage-daemon (4 KiB random, our frontend)";

    /// <summary>Why the block peer (qemu-storage-daemon, also the footprint's) cannot run here, or null if it can.</summary>
    public static string? Unavailable() => Tools.Find(Tools.QemuStorageDaemon) is null
        ? "qemu-storage-daemon is not installed (scripts/install-deps.sh installs qemu-system-x86)"
        : null;

    public void Run(BenchContext context, ComparisonResult result)
    {
        if (Unavailable() is { } why) { result.Unavailable.Add(new UnavailableRow("all", why)); return; }
        result.Pinning = context.Cpus.Describe("our frontend (this process)", "backend (sharpvhost blk or qemu-storage-daemon)");
        int[] depths = [1, 32];
        BlockOperation[] operations = [BlockOperation.RandomRead, BlockOperation.RandomWrite];
        foreach (var storage in new[] { BlockStorageKind.Null, BlockStorageKind.Ram })
        {
            long bytes = storage == BlockStorageKind.Null ? 1L << 30 : (context.Quick ? 64L : 256L) << 20;
            string? ramFile = storage == BlockStorageKind.Ram ? RamFile.Create(context, bytes) : null;
            try
            {
                var ours = BlockBackendSpec.Ours(context.Self, context.SocketPath("ours-blk"), storage, bytes);
                var peer = BlockBackendSpec.QemuStorageDaemon(context.SocketPath("qsd-blk"), storage, bytes, ramFile);
                using var oursRunning = RunningBlockBackend.Start(ours, context.Cpus.BackendCpu, 32, 1 << 20);
                using var peerRunning = RunningBlockBackend.Start(peer, context.Cpus.BackendCpu, 32, 1 << 20);
                if (storage == BlockStorageKind.Ram)
                {
                    BlockLoad.Fill(oursRunning.Client, oursRunning.Buffers[0], bytes); // qemu's file was written when created
                }
                string storageLabel = storage == BlockStorageKind.Null ? "null" : "RAM";
                var rows = new RowBuilder(storage == BlockStorageKind.Null ? "qsd null-co" : "qsd file in tmpfs");
                for (int rep = 0; rep < context.Repetitions; rep++)
                    foreach (var op in operations)
                        foreach (int depth in depths)
                        {
                            var load = new BlockLoadSpec(op, BlockSize, depth, bytes, context.Options.Warmup, context.Options.Measure);
                            BlockLoadResult? o = null, p = null;
                            foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
                            {
                                if (oursTurn) o = oursRunning.Run(load); else p = peerRunning.Run(load);
                            }
                            string @case = $"{storageLabel} {load.Label}";
                            context.Log($"  {@case}: ours {o!.Iops:N0} IOPS p50 {o.P50Microseconds:F1} us; qemu-storage-daemon {p!.Iops:N0} IOPS p50 {p.P50Microseconds:F1} us");
                            rows.Add(@case, "IOPS", "IOPS", Better.Higher, IopsTarget, o.Iops, p.Iops);
                            rows.Add(@case, "p50 latency", "us", Better.Lower, LatencyTarget, o.P50Microseconds, p.P50Microseconds);
                            rows.Add(@case, "p99 latency", "us", Better.Lower, LatencyTarget, o.P99Microseconds, p.P99Microseconds);
                        }
                rows.AddTo(result);
            }
            finally
            {
                if (ramFile is not null) File.Delete(ramFile);
            }
        }
    }
}

/// <summary>A raw image file in tmpfs (/dev/shm), filled with data: qemu-storage-daemon's RAM-backed disk.</summary>
public static class RamFile
{
    public static string Create(BenchContext context, long bytes)
    {
        string dir = Directory.Exists("/dev/shm") ? "/dev/shm" : context.WorkDirectory;
        string path = Path.Combine(dir, $"sharpvhost-bench-{Environment.ProcessId}-{Guid.NewGuid():N}.img");
        var chunk = new byte[1 << 20];
        new Random(1).NextBytes(chunk);
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        for (long done = 0; done < bytes; done += chunk.Length) file.Write(chunk, 0, (int)Math.Min(chunk.Length, bytes - done));
        return path;
    }
}
