using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>
/// DPDK's dpdk-testpmd as a net peer for one test, without hugepages: started with one vdev,
/// printing its port counters every second, stopped with SIGINT (it then prints its final
/// statistics, which <see cref="StopAsync"/> parses). Missing or failing testpmd fails the test.
/// </summary>
internal sealed partial class Testpmd : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly string _prefix;

    public string Output { get { lock (_output) return _output.ToString(); } }

    private Testpmd(Process process, string prefix)
    {
        _process = process;
        _prefix = prefix;
    }

    public static string Program
    {
        get
        {
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
                if (File.Exists(Path.Combine(dir, "dpdk-testpmd"))) return Path.Combine(dir, "dpdk-testpmd");
            throw new InvalidOperationException("dpdk-testpmd is not installed (Debian package dpdk; scripts/install-deps.sh installs it)");
        }
    }

    /// <param name="vdev">e.g. <c>net_vhost0,iface=SOCK,queues=1</c> or <c>net_virtio_user0,path=SOCK,queues=1</c></param>
    /// <param name="forwardMode">txonly, rxonly, macswap, ...</param>
    public static Testpmd Start(string vdev, string forwardMode, params string[] extra)
    {
        string prefix = "svnet" + Guid.NewGuid().ToString("N")[..10];
        var start = new ProcessStartInfo(Program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true, // kept open: without it testpmd quits at once
            UseShellExecute = false,
        };
        string lcores = Environment.ProcessorCount >= 2 ? "0@0,1@1" : "0@0,1@0";
        foreach (var a in new[] { "--lcores", lcores, "--no-pci", "--no-huge", "-m", "1024", "--file-prefix", prefix, "--vdev", vdev,
                     "--", $"--forward-mode={forwardMode}", "--nb-cores=1", "-a", "--total-num-mbufs=16384", "--stats-period", "1" })
            start.ArgumentList.Add(a);
        foreach (var a in extra) start.ArgumentList.Add(a);
        var process = new Process { StartInfo = start };
        var t = new Testpmd(process, prefix);
        process.OutputDataReceived += (_, e) => t.Append(e.Data);
        process.ErrorDataReceived += (_, e) => t.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return t;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    public bool HasExited => _process.HasExited;

    /// <summary>The latest RX-packets and TX-packets testpmd printed (0 before the first report).</summary>
    public (long Rx, long Tx) Latest()
    {
        string text = Output;
        var rx = RxPackets().Matches(text);
        var tx = TxPackets().Matches(text);
        return (rx.Count > 0 ? long.Parse(rx[^1].Groups[1].Value) : 0, tx.Count > 0 ? long.Parse(tx[^1].Groups[1].Value) : 0);
    }

    /// <summary>Waits until <paramref name="done"/> holds for the latest counters; throws with testpmd's output after <paramref name="timeout"/>.</summary>
    public async Task WaitUntilAsync(Func<(long Rx, long Tx), bool> done, TimeSpan timeout, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!done(Latest()))
        {
            if (_process.HasExited) throw new InvalidOperationException($"testpmd exited ({_process.ExitCode}) while waiting for {what}:\n{Output}");
            if (watch.Elapsed > timeout) throw new TimeoutException($"testpmd: no {what} within {timeout}; latest {Latest()}:\n{Output}");
            await Task.Delay(100);
        }
    }

    /// <summary>Stops testpmd with SIGINT and returns its final accumulated RX and TX packet counts.</summary>
    public async Task<(long Rx, long Tx)> StopAsync()
    {
        if (!_process.HasExited) Kill(_process.Id, 2 /* SIGINT */);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _process.WaitForExitAsync(timeout.Token);
        string text = Output;
        int at = text.LastIndexOf("Accumulated forward statistics", StringComparison.Ordinal);
        if (at < 0) throw new InvalidOperationException($"testpmd printed no final statistics:\n{text}");
        var tail = text[at..];
        return (long.Parse(RxPackets().Match(tail).Groups[1].Value), long.Parse(TxPackets().Match(tail).Groups[1].Value));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
        try { Directory.Delete(Path.Combine("/var/run/dpdk", _prefix), recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    [GeneratedRegex(@"RX-packets:\s+(\d+)")]
    private static partial Regex RxPackets();

    [GeneratedRegex(@"TX-packets:\s+(\d+)")]
    private static partial Regex TxPackets();

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
