using System.Globalization;
using System.Text.RegularExpressions;

namespace SharpVhost.Bench;

/// <summary>
/// DPDK's testpmd as a benchmark peer, without hugepages (REFERENCE.md): a <c>net_vhost</c> backend or a
/// <c>net_virtio_user</c> frontend, one forwarding lcore. Each testpmd needs two lcores (main and
/// forwarding); on two CPUs the backend and the frontend are mapped crosswise so that the two
/// forwarding lcores run on different CPUs.
/// </summary>
public static partial class Testpmd
{
    private static int _instances;

    /// <summary>
    /// Starts testpmd with <paramref name="vdev"/> in <paramref name="forwardMode"/> (rxonly, txonly), its
    /// main lcore on <paramref name="mainCpu"/> and its forwarding lcore on <paramref name="forwardCpu"/>,
    /// printing port statistics every second.
    /// </summary>
    public static PeerProcess Start(string name, string vdev, string forwardMode, int mainCpu, int forwardCpu, PacketRates? rates = null)
    {
        string prefix = $"sharpvhost-bench-{Environment.ProcessId}-{Interlocked.Increment(ref _instances)}";
        string[] args =
        [
            "--lcores", $"0@{mainCpu},1@{forwardCpu}", "--no-pci", "--no-huge", "-m", "1024", $"--file-prefix={prefix}",
            "--vdev", vdev, "--log-level=lib.eal:error",
            "--", $"--forward-mode={forwardMode}", "--nb-cores=1", "-a", "--total-num-mbufs=16384", "--stats-period", "1",
        ];
        var process = PeerProcess.Start(name, null, Tools.Testpmd, args, rates is null ? null : rates.Observe);
        process.Exited += () => RemoveRuntimeDirectory(prefix);
        return process;
    }

    public static string VhostBackend(string socket) => $"net_vhost0,iface={socket},queues=1";
    public static string VirtioUserFrontend(string socket) => $"net_virtio_user0,path={socket},queues=1";

    private static void RemoveRuntimeDirectory(string prefix)
    {
        try { Directory.Delete(Path.Combine("/var/run/dpdk", prefix), recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>Collects the per-second Rx-pps and Tx-pps that testpmd prints (one port).</summary>
    public sealed partial class PacketRates
    {
        private readonly object _lock = new();
        private readonly List<double> _rx = [], _tx = [];

        public void Observe(string line)
        {
            var m = RateLine().Match(line);
            if (!m.Success) return;
            double rx = double.Parse(m.Groups["rx"].Value, CultureInfo.InvariantCulture);
            lock (_lock) (m.Groups["dir"].Value == "Rx" ? _rx : _tx).Add(rx);
        }

        public int Count(bool receive) { lock (_lock) return (receive ? _rx : _tx).Count; }

        /// <summary>The samples after the first <paramref name="skip"/> (warm-up), for one direction.</summary>
        public double[] Samples(bool receive, int skip) { lock (_lock) return (receive ? _rx : _tx).Skip(skip).ToArray(); }

        [GeneratedRegex(@"^\s*(?<dir>Rx|Tx)-pps:\s+(?<rx>\d+)")]
        private static partial Regex RateLine();
    }

    /// <summary>
    /// Runs a frontend for <paramref name="seconds"/> seconds of statistics after <paramref name="warmup"/>
    /// warm-up seconds with traffic, and returns the median packets/s in <paramref name="receive"/>'s
    /// direction. The frontend is stopped (SIGINT) and reaped before this returns.
    /// </summary>
    public static double MeasureFrontend(string name, string socket, string forwardMode, CpuPlan cpus, bool receive, int warmup, int seconds)
    {
        var rates = new PacketRates();
        // Crosswise: the frontend's forwarding lcore on the frontend CPU, its main lcore on the backend CPU.
        using var frontend = Start(name, VirtioUserFrontend(socket), forwardMode, cpus.BackendCpu, cpus.FrontendCpu, rates);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60 + warmup + seconds);
        // Samples start at 0 pps while the port comes up: wait for traffic, then warm-up, then the measured seconds.
        while (true)
        {
            if (frontend.HasExited) throw new IOException($"{name} exited early:\n{frontend.Tail()}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{name} produced no traffic:\n{frontend.Tail()}");
            var all = rates.Samples(receive, 0);
            int first = Array.FindIndex(all, r => r > 0);
            if (first >= 0 && all.Length >= first + warmup + seconds)
            {
                frontend.Interrupt(TimeSpan.FromSeconds(10));
                return Stats.Median(all.Skip(first + warmup).Take(seconds).ToArray());
            }
            Thread.Sleep(50);
        }
    }
}
