using System.Diagnostics;
using System.Text.Json;
using SharpVhost.Bench.Report;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// Storage engines, our frontend against both backends, 4 KiB random I/O at QD1 and QD32:
/// <list type="bullet">
/// <item>latency-bound: ours <c>--null --io-delay-ms 1</c> vs qsd <c>null-aio,latency-ns=1000000</c>,
/// beside the limit QD / latency;</item>
/// <item>this machine's disk: one image of real data, the page cache dropped before each side, ours
/// io_uring + O_DIRECT vs qsd <c>cache.direct=on,aio=io_uring</c>, ours threads vs qsd <c>aio=threads</c>,
/// beside fio on the same file with io_uring, O_DIRECT and the same depth (the limit).</item>
/// </list>
/// Targets (issue 14): latency-bound QD32 at least 0.95 of the limit and 1.0x qsd; disk QD32 at least
/// 1.0x qsd with the same engine and 0.85 of fio.
/// </summary>
public sealed class StorageComparison : IComparison
{
    private const int BlockSize = 4096;
    private const double LatencyMs = 1.0;

    public string Name => "storage";
    public string Title => "Storage engines: emulated 1 ms latency and this machine's disk (4 KiB random, our frontend, fio as the limit)";

    public void Run(BenchContext context, ComparisonResult result)
    {
        if (BlockComparison.Unavailable() is { } why) { result.Unavailable.Add(new UnavailableRow("all", why)); return; }
        result.Pinning = context.Cpus.Describe("our frontend (this process)", "backend (sharpvhost blk, qemu-storage-daemon) and fio");
        LatencyBound(context, result);
        Disk(context, result);
    }

    private static void LatencyBound(BenchContext context, ComparisonResult result)
    {
        long bytes = 1L << 30;
        string ourSocket = context.SocketPath("ours-lat"), peerSocket = context.SocketPath("qsd-lat");
        var ours = new BlockBackendSpec("sharpvhost blk (null, 1 ms)", context.Self.Program,
            [.. context.Self.Args("blk", "--socket-path", ourSocket, "--null", $"{bytes >> 20}M", "--io-delay-ms", LatencyMs.ToString("0.###"))], ourSocket);
        var peer = new BlockBackendSpec("qemu-storage-daemon (null-aio, 1 ms)", Tools.QemuStorageDaemon,
        [
            "--blockdev", $"driver=null-aio,node-name=disk0,size={bytes},read-zeroes=off,latency-ns={(long)(LatencyMs * 1_000_000)}",
            "--export", $"type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path={peerSocket},writable=on,num-queues=1",
        ], peerSocket);
        using var oursRunning = RunningBlockBackend.Start(ours, context.Cpus.BackendCpu, 32, 64 << 10);
        using var peerRunning = RunningBlockBackend.Start(peer, context.Cpus.BackendCpu, 32, 64 << 10);
        var versusPeer = new RowBuilder("qsd null-aio latency-ns=1000000");
        var versusLimit = new RowBuilder("limit QD / latency");
        for (int rep = 0; rep < context.Repetitions; rep++)
            foreach (int depth in new[] { 1, 32 })
            {
                var load = new BlockLoadSpec(BlockOperation.RandomRead, BlockSize, depth, bytes, context.Options.Warmup, Measure(context));
                BlockLoadResult? o = null, p = null;
                foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
                    if (oursTurn) o = oursRunning.Run(load); else p = peerRunning.Run(load);
                double limit = depth * 1000.0 / LatencyMs;
                string @case = $"1 ms latency {load.Label}";
                context.Log($"  {@case}: ours {o!.Iops:N0} IOPS, qsd {p!.Iops:N0} IOPS, limit {limit:N0}");
                versusPeer.Add(@case, "IOPS", "IOPS", Better.Higher, depth == 32 ? 1.0 : null, o.Iops, p.Iops);
                versusLimit.Add(@case, "IOPS", "IOPS", Better.Higher, depth == 32 ? 0.95 : null, o.Iops, limit);
            }
        versusPeer.AddTo(result);
        versusLimit.AddTo(result);
    }

    /// <summary>Emulated latency needs a longer window than the CPU-bound cases to count enough requests at QD1.</summary>
    private static TimeSpan Measure(BenchContext context) => context.Quick ? TimeSpan.FromSeconds(0.2) : context.Options.Measure;

    private static void Disk(BenchContext context, ComparisonResult result)
    {
        long bytes = (context.Quick ? 64L : 1024L) << 20;
        string image = Path.Combine(context.WorkDirectory, "storage-disk.img"); // the work directory is on this machine's disk, not tmpfs
        WriteImage(image, bytes);
        try
        {
            bool dropped = DropPageCache(out string? dropError);
            if (!dropped) result.Notes.Add($"page cache not dropped ({dropError}): the disk numbers include cache hits");
            string? fio = Tools.Find("fio");
            if (fio is null) result.Unavailable.Add(new UnavailableRow("fio limit", "fio is not installed (scripts/install-deps.sh installs it)"));
            var pairs = new[]
            {
                (Engine: "io_uring", Ours: "io_uring", QsdAio: "io_uring"),
                (Engine: "threads", Ours: "threads", QsdAio: "threads"),
            };
            int[] depths = [1, 32];
            BlockOperation[] operations = [BlockOperation.RandomRead, BlockOperation.RandomWrite];
            var fioRows = new RowBuilder("fio io_uring O_DIRECT (limit)");
            var engineRows = new RowBuilder("fio io_uring O_DIRECT (limit)");
            foreach (var pair in pairs)
            {
                string ourSocket = context.SocketPath("ours-disk"), peerSocket = context.SocketPath("qsd-disk");
                var ours = new BlockBackendSpec($"sharpvhost blk (O_DIRECT, {pair.Ours})", context.Self.Program,
                    [.. context.Self.Args("blk", "--socket-path", ourSocket, "--blk-file", image, "--direct", "--aio", pair.Ours)], ourSocket);
                var peer = new BlockBackendSpec($"qemu-storage-daemon (cache.direct=on, aio={pair.QsdAio})", Tools.QemuStorageDaemon,
                [
                    "--blockdev", $"driver=file,node-name=disk0,filename={image},cache.direct=on,aio={pair.QsdAio}",
                    "--export", $"type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path={peerSocket},writable=on,num-queues=1",
                ], peerSocket);
                using var oursRunning = RunningBlockBackend.Start(ours, context.Cpus.BackendCpu, 32, 64 << 10);
                using var peerRunning = RunningBlockBackend.Start(peer, context.Cpus.BackendCpu, 32, 64 << 10);
                var rows = new RowBuilder($"qsd file cache.direct=on aio={pair.QsdAio}");
                for (int rep = 0; rep < context.Repetitions; rep++)
                    foreach (var op in operations)
                        foreach (int depth in depths)
                        {
                            var load = new BlockLoadSpec(op, BlockSize, depth, bytes, context.Options.Warmup, context.Options.Measure);
                            BlockLoadResult? o = null, p = null;
                            foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
                            {
                                if (dropped && !context.Quick) DropPageCache(out _); // quick: one drop at the start (each can take seconds)
                                if (oursTurn) o = oursRunning.Run(load); else p = peerRunning.Run(load);
                            }
                            string @case = $"disk {pair.Engine} {load.Label}";
                            double? limit = null;
                            if (fio is not null && (depth == 32 || !context.Quick))
                            {
                                if (dropped && !context.Quick) DropPageCache(out _);
                                limit = Fio(fio, context, image, bytes, op, depth);
                                fioRows.Add(@case, "IOPS", "IOPS", Better.Higher, depth == 32 ? 0.85 : null, o!.Iops, limit);
                                // The engine alone, driven at this depth without vhost-user: what it can give the device
                                // once requests overlap (until the block device keeps several in flight, it gets one at a time).
                                if (dropped && !context.Quick) DropPageCache(out _);
                                var kind = pair.Ours == "threads" ? SharpVhost.Devices.Block.StorageEngineKind.Threads : SharpVhost.Devices.Block.StorageEngineKind.IoUring;
                                double alone = EngineLoad.Run(image, kind, op, depth, bytes, context.Options.Warmup, context.Options.Measure, context.Cpus.BackendCpu);
                                engineRows.Add($"engine alone {pair.Engine} {load.Label}", "IOPS", "IOPS", Better.Higher, depth == 32 ? 0.85 : null, alone, limit);
                                context.Log($"  engine alone {pair.Engine} {load.Label}: {alone:N0} IOPS");
                            }
                            context.Log($"  {@case}: ours {o!.Iops:N0} IOPS p50 {o.P50Microseconds:F1} us; qsd {p!.Iops:N0} IOPS p50 {p.P50Microseconds:F1} us; fio {limit:N0}");
                            rows.Add(@case, "IOPS", "IOPS", Better.Higher, depth == 32 ? 1.0 : null, o.Iops, p.Iops);
                            rows.Add(@case, "p50 latency", "us", Better.Lower, null, o.P50Microseconds, p.P50Microseconds);
                        }
                rows.AddTo(result);
            }
            fioRows.AddTo(result);
            engineRows.AddTo(result);
            result.Notes.Add("'engine alone' rows drive our engine directly at the same depth (no vhost-user, no guest ring): what the engine gives, apart from the device path.");
        }
        finally
        {
            File.Delete(image);
        }
    }

    /// <summary>The image, written once with incompressible data so that reads hit allocated blocks.</summary>
    private static void WriteImage(string path, long bytes)
    {
        var chunk = new byte[1 << 20];
        var rng = new Random(14);
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        for (long done = 0; done < bytes; done += chunk.Length)
        {
            rng.NextBytes(chunk);
            file.Write(chunk, 0, (int)Math.Min(chunk.Length, bytes - done));
        }
        file.Flush(flushToDisk: true);
    }

    /// <summary>sync, then echo 3 > /proc/sys/vm/drop_caches (root only).</summary>
    private static bool DropPageCache(out string? error)
    {
        try
        {
            Tools.Run("sync");
            File.WriteAllText("/proc/sys/vm/drop_caches", "3");
            error = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>fio on the image itself with io_uring, O_DIRECT and the same depth, pinned to the backend CPU: its IOPS.</summary>
    private static double? Fio(string fio, BenchContext context, string image, long bytes, BlockOperation op, int depth)
    {
        double seconds = Math.Max(1, Math.Ceiling(context.Options.Measure.TotalSeconds));
        var info = new ProcessStartInfo(Tools.Find(Tools.Taskset) ?? fio) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (info.FileName != fio) { info.ArgumentList.Add("-c"); info.ArgumentList.Add(context.Cpus.BackendCpu.ToString()); info.ArgumentList.Add(fio); }
        foreach (var a in new[]
        {
            "--name=limit", $"--filename={image}", "--ioengine=io_uring", "--direct=1", $"--size={bytes}",
            $"--rw={(op == BlockOperation.RandomWrite ? "randwrite" : "randread")}", $"--bs={BlockSize}", $"--iodepth={depth}",
            "--time_based", $"--runtime={seconds}", "--ramp_time=250ms", "--randrepeat=0", "--norandommap", "--output-format=json",
        }) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(seconds + 30))) { p.Kill(true); return null; }
        if (p.ExitCode != 0) throw new IOException($"fio failed ({p.ExitCode}): {stderr.Result}");
        string json = stdout.Result;
        int start = json.IndexOf('{'); // fio may print notes before its JSON
        using var doc = JsonDocument.Parse(json[start..]);
        var job = doc.RootElement.GetProperty("jobs")[0];
        return job.GetProperty(op == BlockOperation.RandomWrite ? "write" : "read").GetProperty("iops").GetDouble();
    }
}
