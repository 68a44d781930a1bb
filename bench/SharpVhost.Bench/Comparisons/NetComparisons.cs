using SharpVhost.Bench.Report;

namespace SharpVhost.Bench.Comparisons;

/// <summary>
/// Comparisons 2, 3 and 6: packets/s of 64-byte frames between DPDK's testpmd and a vhost-user-net
/// backend, ours (`sharpvhost net`) or DPDK's `net_vhost`. Throughput is read from the DPDK frontend's
/// own per-second statistics for both contenders, so the same meter measures both.
/// </summary>
public static class NetComparisons
{
    public const double Target = 1.0;

    /// <summary>Why a net comparison cannot run here, or null if it can.</summary>
    public static string? Unavailable(BenchContext context)
    {
        if (Tools.Find(Tools.Testpmd) is null) return "dpdk-testpmd is not installed (scripts/install-deps.sh installs dpdk)";
        if (!context.Self.HasCommand("net")) return "`sharpvhost net` (the net backend, issue 5) is not on this branch yet";
        return null;
    }

    private static int Warmup(BenchContext c) => c.Quick ? 0 : 2;
    private static int Seconds(BenchContext c) => c.Quick ? 1 : 4;
    /// <summary>A testpmd frontend takes seconds to start: net comparisons repeat at most three times.</summary>
    public static int Repetitions(BenchContext c) => Math.Min(c.Repetitions, 3);

    /// <summary>
    /// Runs a DPDK frontend in <paramref name="frontendMode"/> against backends started once each,
    /// alternating between ours and the peer every repetition, and adds packets/s rows. With
    /// <paramref name="startOursPolling"/>, our backend is also measured with busy-polling workers
    /// (DPDK's backend always polls) against the same peer samples.
    /// </summary>
    internal static void Compare(BenchContext context, ComparisonResult result, RowBuilder rows, string @case, string frontendMode, bool receive,
        Func<string, PeerProcess> startOurs, Func<string, PeerProcess> startPeer, double target, Func<string, PeerProcess>? startOursPolling = null)
    {
        string oursSocket = context.SocketPath("ours-net"), peerSocket = context.SocketPath("peer-net"), pollingSocket = context.SocketPath("ours-net-poll");
        using var ours = startOurs(oursSocket);
        using var peer = startPeer(peerSocket);
        using var polling = startOursPolling?.Invoke(pollingSocket);
        ours.WaitForSocket(oursSocket, TimeSpan.FromSeconds(60));
        peer.WaitForSocket(peerSocket, TimeSpan.FromSeconds(60));
        polling?.WaitForSocket(pollingSocket, TimeSpan.FromSeconds(60));
        var contenders = new List<(string Role, PeerProcess Backend, string Socket)> { ("ours", ours, oursSocket) };
        if (polling is not null) contenders.Add(("polling", polling, pollingSocket));
        contenders.Add(("peer", peer, peerSocket));
        try
        {
            for (int rep = 0; rep < Repetitions(context); rep++)
            {
                var rates = new Dictionary<string, double>();
                foreach (var (role, backend, socket) in BenchContext.OursFirst(rep) ? contenders : Enumerable.Reverse(contenders))
                {
                    if (backend.HasExited) throw new IOException($"{backend.Name} exited:\n{backend.Tail()}");
                    // Only the contender being measured runs: the others are frozen, so that an idle DPDK
                    // backend polling on the same CPU does not take half of it from ours (or ours from it).
                    foreach (var other in contenders) if (other.Backend != backend) other.Backend.Pause();
                    backend.Resume();
                    rates[role] = Testpmd.MeasureFrontend($"testpmd {frontendMode} frontend", socket, frontendMode,
                        context.Cpus, receive, Warmup(context), Seconds(context));
                }
                context.Log($"  {@case}: ours {rates["ours"]:N0} pps{(polling is null ? "" : $", ours busy-polling {rates["polling"]:N0} pps")}, peer {rates["peer"]:N0} pps");
                rows.Add(@case, "packets/s", "pps", Better.Higher, target, rates["ours"], rates["peer"]);
                if (polling is not null) rows.Add(@case + ", ours --busy-poll", "packets/s", "pps", Better.Higher, target, rates["polling"], rates["peer"]);
            }
        }
        finally
        {
            foreach (var (_, backend, _) in contenders) backend.Resume();
        }
    }

    internal static PeerProcess StartOurNet(BenchContext context, string socket, string mode, string metadata = "direct", bool busyPoll = false)
    {
        string[] modeArgs = mode == "source" ? ["--source", "--frame-size", "64"] : [$"--{mode}"];
        return PeerProcess.Start($"sharpvhost net --{mode}{(busyPoll ? " --busy-poll" : "")}", context.Cpus.BackendCpu, context.Self.Program,
            [.. context.Self.Args("net", "--socket-path", socket, "--metadata", metadata), .. modeArgs, .. (busyPoll ? new[] { "--busy-poll" } : [])]);
    }

    /// <summary>DPDK's net_vhost backend, its forwarding lcore on the backend CPU (main lcore on the frontend CPU).</summary>
    internal static PeerProcess StartDpdkBackend(BenchContext context, string socket, string mode)
        => Testpmd.Start($"testpmd net_vhost {mode}", Testpmd.VhostBackend(socket), mode, context.Cpus.FrontendCpu, context.Cpus.BackendCpu);

    private static string Pinning(BenchContext context) =>
        $"backend (sharpvhost net: taskset -c {context.Cpus.BackendCpu}; testpmd net_vhost: --lcores 0@{context.Cpus.FrontendCpu},1@{context.Cpus.BackendCpu}) " +
        $"forwarding on CPU {context.Cpus.BackendCpu}; testpmd net_virtio_user frontend --lcores 0@{context.Cpus.BackendCpu},1@{context.Cpus.FrontendCpu} (forwarding on CPU {context.Cpus.FrontendCpu})";

    /// <summary>2: a guest-side sender (virtio_user txonly) into our sink vs DPDK's net_vhost rxonly.</summary>
    public sealed class NetReceive : IComparison
    {
        public string Name => "net-rx";
        public string Title => "Net receive: testpmd virtio_user txonly into sharpvhost net --sink vs net_vhost rxonly (64 B)";

        public void Run(BenchContext context, ComparisonResult result)
        {
            if (Unavailable(context) is { } why) { result.Unavailable.Add(new UnavailableRow("64 B frames", why)); return; }
            result.Pinning = Pinning(context);
            var rows = new RowBuilder("testpmd net_vhost rxonly");
            Compare(context, result, rows, "64 B txonly -> backend", "txonly", receive: false,
                s => StartOurNet(context, s, "sink"), s => StartDpdkBackend(context, s, "rxonly"), Target,
                s => StartOurNet(context, s, "sink", busyPoll: true));
            rows.AddTo(result);
        }
    }

    /// <summary>3: our source vs DPDK's net_vhost txonly, into a guest-side receiver (virtio_user rxonly).</summary>
    public sealed class NetTransmit : IComparison
    {
        public string Name => "net-tx";
        public string Title => "Net transmit: sharpvhost net --source vs net_vhost txonly into testpmd virtio_user rxonly (64 B)";

        public void Run(BenchContext context, ComparisonResult result)
        {
            if (Unavailable(context) is { } why) { result.Unavailable.Add(new UnavailableRow("64 B frames", why)); return; }
            result.Pinning = Pinning(context);
            var rows = new RowBuilder("testpmd net_vhost txonly");
            Compare(context, result, rows, "backend -> 64 B rxonly", "rxonly", receive: true,
                s => StartOurNet(context, s, "source"), s => StartDpdkBackend(context, s, "txonly"), Target,
                s => StartOurNet(context, s, "source", busyPoll: true));
            rows.AddTo(result);
        }
    }

#if !HAS_NET_CLIENT
    /// <summary>6 before our net frontend library exists: reported as not available.</summary>
    public sealed class NetFrontend : IComparison
    {
        public string Name => "net-frontend";
        public string Title => "Net frontend: our NetClient vs testpmd virtio_user txonly, into net_vhost rxonly (64 B)";

        public void Run(BenchContext context, ComparisonResult result)
            => result.Unavailable.Add(new UnavailableRow("64 B frames", Unavailable(context) ?? "our net frontend library (NetClient, issue 5) is not on this branch yet"));
    }
#endif
}
