using SharpVhost.Bench.Report;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// Comparison 7: resident memory of an idle and of a busy `sharpvhost blk --null 1G` (guest memory
/// mappings excluded), and the time from starting the program to it accepting a connection;
/// qemu-storage-daemon with a null-co export as the reference. No target: the issue asks for the numbers.
/// </summary>
public sealed class FootprintComparison : IComparison
{
    public string Name => "footprint";
    public string Title => "Footprint: sharpvhost blk vs qemu-storage-daemon (null disk)";

    public void Run(BenchContext context, ComparisonResult result)
    {
        if (BlockComparison.Unavailable() is { } why) { result.Unavailable.Add(new UnavailableRow("all", why)); return; }
        result.Pinning = context.Cpus.Describe("our frontend (this process)", "backend");
        result.Notes.Add("idle: a frontend connected (memory shared, queue started), no I/O; busy: the largest sample during 4 KiB random reads at QD32; " +
            "memfd mappings (the frontend's guest memory) are not counted. Ours: " + context.Self.Kind + " (" + Path.GetFileName(context.Self.Program) + ").");
        const long bytes = 1L << 30;
        var rows = new RowBuilder("qemu-storage-daemon");
        int reps = Math.Max(context.Repetitions, context.Quick ? 1 : 5);
        for (int rep = 0; rep < reps; rep++)
        {
            Sample? ours = null, peer = null;
            foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
            {
                var spec = oursTurn
                    ? BlockBackendSpec.Ours(context.Self, context.SocketPath("fp-ours"), BlockStorageKind.Null, bytes)
                    : BlockBackendSpec.QemuStorageDaemon(context.SocketPath("fp-qsd"), BlockStorageKind.Null, bytes, null);
                var sample = Measure(context, spec);
                if (oursTurn) ours = sample; else peer = sample;
            }
            context.Log($"  start-to-listen ours {ours!.ListenMs:F1} ms, qsd {peer!.ListenMs:F1} ms; idle {ours.IdleKiB} / {peer.IdleKiB} KiB; busy {ours.BusyKiB} / {peer.BusyKiB} KiB");
            rows.Add("start to accepting a connection", "time", "ms", Better.Lower, null, ours.ListenMs, peer.ListenMs);
            rows.Add("idle, frontend connected", "resident memory", "MiB", Better.Lower, null, ours.IdleKiB / 1024.0, peer.IdleKiB / 1024.0);
            rows.Add("busy, 4 KiB randread QD32", "resident memory", "MiB", Better.Lower, null, ours.BusyKiB / 1024.0, peer.BusyKiB / 1024.0);
        }
        rows.AddTo(result);
    }

    private sealed record Sample(double ListenMs, long IdleKiB, long BusyKiB);

    private static Sample Measure(BenchContext context, BlockBackendSpec spec)
    {
        using var running = RunningBlockBackend.Start(spec, context.Cpus.BackendCpu, 32, 4096);
        int pid = running.Process.Pid;
        Thread.Sleep(context.Quick ? 100 : 500);
        long idle = ProcessMemory.ResidentExcludingGuestKiB(pid) ?? throw new IOException($"{spec.Name} is gone");
        long busy = 0;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                busy = Math.Max(busy, ProcessMemory.ResidentExcludingGuestKiB(pid) ?? 0);
                Thread.Sleep(20);
            }
        });
        running.Run(new BlockLoadSpec(BlockOperation.RandomRead, 4096, 32, 1L << 30, context.Options.Warmup, context.Options.Measure));
        stop.Cancel();
        sampler.Wait();
        busy = Math.Max(busy, ProcessMemory.ResidentExcludingGuestKiB(pid) ?? 0);
        return new Sample(running.TimeToListen.TotalMilliseconds, idle, busy);
    }
}
