#if HAS_NET_CLIENT
using System.Diagnostics;
using SharpVhost.Bench.Report;
using SharpVhost.Devices.Net;
using SharpVhost.Interop;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// Comparison 6: our net frontend library (<see cref="NetClient"/>, in this process) against DPDK's
/// net_virtio_user, both sending 64-byte frames into DPDK's net_vhost in rxonly mode. The same meter
/// counts both: the backend testpmd's per-second Rx-pps. Target: at least 1.0x.
/// </summary>
public sealed class NetFrontendComparison : IComparison
{
    public string Name => "net-frontend";
    public string Title => "Net frontend: our NetClient vs testpmd virtio_user txonly, into net_vhost rxonly (64 B)";

    public void Run(BenchContext context, ComparisonResult result)
    {
        if (NetComparisons.Unavailable(context) is { } why) { result.Unavailable.Add(new UnavailableRow("64 B frames", why)); return; }
        var cpus = context.Cpus;
        result.Pinning = $"testpmd net_vhost rxonly backend --lcores 0@{cpus.FrontendCpu},1@{cpus.BackendCpu} (forwarding on CPU {cpus.BackendCpu}); " +
            $"frontend on CPU {cpus.FrontendCpu}: our NetClient sender thread, or testpmd virtio_user txonly --lcores 0@{cpus.BackendCpu},1@{cpus.FrontendCpu}";
        int warmup = context.Quick ? 0 : 2, seconds = context.Quick ? 1 : 4;
        int repetitions = NetComparisons.Repetitions(context);
        string socket = context.SocketPath("vhost-rx");
        var rates = new Testpmd.PacketRates();
        using var backend = Testpmd.Start("testpmd net_vhost rxonly", Testpmd.VhostBackend(socket), "rxonly", cpus.FrontendCpu, cpus.BackendCpu, rates);
        backend.WaitForSocket(socket, TimeSpan.FromSeconds(60));
        var rows = new RowBuilder("testpmd virtio_user txonly");
        for (int rep = 0; rep < repetitions; rep++)
        {
            double? ours = null, peer = null;
            foreach (bool oursTurn in BenchContext.OursFirst(rep) ? new[] { true, false } : [false, true])
            {
                if (backend.HasExited) throw new IOException($"testpmd net_vhost exited:\n{backend.Tail()}");
                int from = rates.Count(receive: true);
                if (oursTurn) ours = MeasureOurs(socket, rates, from, warmup, seconds, cpus.FrontendCpu);
                else
                {
                    using var frontend = Testpmd.Start("testpmd virtio_user txonly", Testpmd.VirtioUserFrontend(socket), "txonly", cpus.BackendCpu, cpus.FrontendCpu);
                    peer = WaitForRate(rates, from, warmup, seconds, () => frontend.HasExited);
                    frontend.Interrupt(TimeSpan.FromSeconds(10));
                }
                Thread.Sleep(1500); // let the backend notice the disconnect before the next frontend connects
            }
            context.Log($"  64 B into net_vhost: NetClient {ours:N0} pps, virtio_user {peer:N0} pps");
            rows.Add("64 B frames into net_vhost rxonly", "packets/s", "pps", Better.Higher, NetComparisons.Target, ours, peer);
        }
        rows.AddTo(result);
    }

    private static double MeasureOurs(string socket, Testpmd.PacketRates rates, int from, int warmup, int seconds, int cpu)
    {
        bool stop = false;
        Exception? failure = null;
        var sender = new Thread(() =>
        {
            try
            {
                ThreadAffinity.PinCurrentThread(cpu);
                using var client = NetClient.Connect(socket);
                var frame = new byte[64];
                for (int i = 0; i < 6; i++) { frame[i] = 0x02; frame[6 + i] = 0x52; } // unicast destination, local source
                frame[12] = 0x08; // IPv4 ethertype
                while (!Volatile.Read(ref stop))
                {
                    int queued = 0;
                    while (queued < 32 && client.TrySend(frame, publish: false)) queued++;
                    if (queued > 0) client.Flush();
                    else Thread.SpinWait(20);
                }
            }
            catch (Exception e) { failure = e; }
        }) { IsBackground = true, Name = "net-sender" };
        sender.Start();
        try
        {
            return WaitForRate(rates, from, warmup, seconds, () => failure is not null || !sender.IsAlive);
        }
        finally
        {
            Volatile.Write(ref stop, true);
            sender.Join(TimeSpan.FromSeconds(10));
            if (failure is not null) throw new IOException("our net frontend failed: " + failure.Message, failure);
        }
    }

    /// <summary>Waits for traffic in the backend's samples after index <paramref name="from"/>, then warm-up and measured seconds; returns their median.</summary>
    private static double WaitForRate(Testpmd.PacketRates rates, int from, int warmup, int seconds, Func<bool> failed)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * (60L + warmup + seconds);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (failed()) throw new IOException("the sender stopped before the measurement ended");
            var samples = rates.Samples(receive: true, skip: from);
            int first = Array.FindIndex(samples, r => r > 0);
            if (first >= 0 && samples.Length >= first + warmup + seconds) return Stats.Median(samples.Skip(first + warmup).Take(seconds).ToArray());
            Thread.Sleep(50);
        }
        throw new TimeoutException("no traffic reached the backend");
    }
}
#endif
