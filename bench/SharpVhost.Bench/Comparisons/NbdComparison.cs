using SharpVhost.Bench.Report;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// An NBD disk: our frontend driving `sharpvhost blk --nbd` and qemu-storage-daemon's vhost-user-blk export of
/// a `driver=nbd` node, both clients of the same nbdkit (`--threads 64 memory 1G`, then with the delay filter
/// at 1 ms per read and write), 4 KiB random reads and writes at queue depth 1 and 32.
/// Target: at least 1.0x qemu-storage-daemon's IOPS. With the delay the limit is QD / 1 ms (QEMU's NBD
/// client keeps at most 16 requests in flight).
/// </summary>
public sealed class NbdComparison : IComparison
{
    public const double IopsTarget = 1.0;
    private const int BlockSize = 4096;
    private const long DiskBytes = 1L << 30;

    public string Name => "nbd";
    public string Title => "NBD: sharpvhost blk --nbd vs qemu-storage-daemon driver=nbd, same nbdkit (4 KiB random, our frontend)";

    public void Run(BenchContext context, ComparisonResult result)
    {
        if (BlockComparison.Unavailable() is { } why) { result.Unavailable.Add(new UnavailableRow("all", why)); return; }
        if (Tools.Find("nbdkit") is not { } nbdkit) { result.Unavailable.Add(new UnavailableRow("all", "nbdkit is not installed (scripts/install-deps.sh)")); return; }
        result.Pinning = context.Cpus.Describe("our frontend (this process)", "backend (sharpvhost blk or qemu-storage-daemon) and nbdkit");
        int[] depths = [1, 32];
        BlockOperation[] operations = [BlockOperation.RandomRead, BlockOperation.RandomWrite];
        foreach (bool delayed in new[] { false, true })
        {
            string nbdSocket = context.SocketPath(delayed ? "nbdkit-delay" : "nbdkit");
            if (File.Exists(nbdSocket)) File.Delete(nbdSocket);
            string[] filter = delayed ? ["--filter=delay"] : [];
            string[] delayArgs = delayed ? ["delay-read=1ms", "delay-write=1ms"] : [];
            using var server = PeerProcess.Start("nbdkit", context.Cpus.BackendCpu, nbdkit,
                ["-f", "--threads", "64", "-U", nbdSocket, .. filter, "memory", $"{DiskBytes >> 20}M", .. delayArgs]);
            server.WaitForSocket(nbdSocket, TimeSpan.FromSeconds(30));
            Thread.Sleep(200); // the socket file appears at bind, a moment before listen
            string uri = $"nbd+unix:///?socket={nbdSocket}";
            string oursSocket = context.SocketPath("ours-nbd"), peerSocket = context.SocketPath("qsd-nbd"); // a new path per call
            var ours = new BlockBackendSpec("sharpvhost blk --nbd", context.Self.Program,
                [.. context.Self.Args("blk", "--socket-path", oursSocket, "--nbd", uri)], oursSocket);
            var peer = new BlockBackendSpec("qemu-storage-daemon", Tools.QemuStorageDaemon,
            [
                "--blockdev", $"driver=nbd,node-name=disk0,server.type=unix,server.path={nbdSocket}",
                "--export", $"type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path={peerSocket},writable=on,num-queues=1",
            ], peerSocket);
            using var oursRunning = RunningBlockBackend.Start(ours, context.Cpus.BackendCpu, 32, 1 << 20);
            using var peerRunning = RunningBlockBackend.Start(peer, context.Cpus.BackendCpu, 32, 1 << 20);
            string label = delayed ? "nbdkit memory + 1 ms delay" : "nbdkit memory";
            var rows = new RowBuilder("qsd driver=nbd");
            for (int rep = 0; rep < context.Repetitions; rep++)
                foreach (var op in operations)
                    foreach (int depth in depths)
                    {
                        var load = new BlockLoadSpec(op, BlockSize, depth, DiskBytes, context.Options.Warmup, context.Options.Measure);
                        BlockLoadResult? o = null, p = null;
                        foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
                        {
                            if (oursTurn) o = oursRunning.Run(load); else p = peerRunning.Run(load);
                        }
                        string limit = delayed ? $", limit QD/latency {depth * 1000:N0} IOPS (qsd: {Math.Min(depth, 16) * 1000:N0})" : "";
                        string @case = $"{label} {load.Label}";
                        context.Log($"  {@case}: ours {o!.Iops:N0} IOPS p50 {o.P50Microseconds:F1} us; qemu-storage-daemon {p!.Iops:N0} IOPS p50 {p.P50Microseconds:F1} us{limit}");
                        rows.Add(@case, "IOPS", "IOPS", Better.Higher, IopsTarget, o.Iops, p.Iops);
                        rows.Add(@case, "p50 latency", "us", Better.Lower, null, o.P50Microseconds, p.P50Microseconds);
                    }
            rows.AddTo(result);
        }
    }
}
