using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// The real NBD servers the NBD client is tested against, each serving one Unix socket:
/// nbdkit (Debian package nbdkit: the memory and file plugins, the delay and error filters) and
/// qemu-nbd (qemu-utils: any image format QEMU reads, qcow2 here).
/// </summary>
public static class NbdServers
{
    public static string UriFor(string socket) => $"nbd+unix:///?socket={socket}";

    // No --exit-with-parent: its PR_SET_PDEATHSIG fires when the forking *thread* ends, and .NET forks from pool threads.
    /// <summary><c>nbdkit -f -U SOCKET [--filter=F ...] PLUGIN ARGS...</c>; arguments after the plugin name are its and the filters' parameters.</summary>
    public static Task<BackendProcess> NbdkitAsync(string socket, string logDirectory, string name, params string[] pluginAndParameters)
    {
        if (File.Exists(socket)) File.Delete(socket); // a killed server leaves its socket behind
        var (program, arguments) = Nbdkit(logDirectory, name, ["-f", "-U", socket, .. pluginAndParameters]);
        return StartWithRetryAsync(() => ListeningAsync(BackendProcess.StartAsync(name, program, arguments, [socket], logDirectory), socket), socket, logDirectory, name);
    }

    /// <summary>
    /// The command that runs nbdkit with <paramref name="arguments"/>. With SHARPVHOST_TRACE_PEER_SIGNALS=1
    /// it runs under strace recording only the signals nbdkit receives (NAME.signals in the log directory),
    /// so that an early death names its sender (see <see cref="SignalReport"/>); strace 6.1 has no --kill-on-exit,
    /// and its only thread is nbdkit's parent, so --exit-with-parent ends nbdkit with it; -I 1 lets a SIGTERM
    /// end strace (and so nbdkit, cleanly) as it would nbdkit itself.
    /// </summary>
    public static (string Program, string[] Arguments) Nbdkit(string logDirectory, string name, string[] arguments)
    {
        var nbdkit = Tools.Require("nbdkit", "nbdkit");
        if (Environment.GetEnvironmentVariable("SHARPVHOST_TRACE_PEER_SIGNALS") != "1") return (nbdkit, arguments);
        return (Tools.Require("strace", "strace"),
            ["-f", "--seccomp-bpf", "-I", "1", "-qq", "-e", "trace=none", "-e", "signal=!SIGCHLD", "-o", SignalLog(logDirectory, name), nbdkit, "--exit-with-parent", .. arguments]);
    }

    /// <summary>What the signal trace of <paramref name="name"/> recorded, each sender's command line beside it (empty without a trace).</summary>
    public static string SignalReport(string logDirectory, string name)
    {
        string path = SignalLog(logDirectory, name);
        if (!File.Exists(path)) return "";
        var report = new System.Text.StringBuilder($"[harness] signals received (test host pid {Environment.ProcessId}):\n");
        foreach (var line in File.ReadLines(path))
        {
            report.Append("  ").Append(line);
            var sender = System.Text.RegularExpressions.Regex.Match(line, @"si_pid=(\d+)");
            if (sender.Success) report.Append("  <- ").Append(Describe(int.Parse(sender.Groups[1].Value)));
            report.Append('\n');
        }
        return report.ToString();

        static string Describe(int pid)
        {
            try
            {
                string command = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim();
                string status = File.ReadAllText($"/proc/{pid}/status");
                string parent = System.Text.RegularExpressions.Regex.Match(status, @"PPid:\s+(\d+)").Groups[1].Value;
                string parentCommand = File.Exists($"/proc/{parent}/cmdline") ? File.ReadAllText($"/proc/{parent}/cmdline").Replace('\0', ' ').Trim() : "?";
                return $"{pid}: {command} (parent {parent}: {parentCommand})";
            }
            catch (IOException) { return $"{pid}: gone"; }
            catch (UnauthorizedAccessException) { return $"{pid}: unreadable"; }
        }
    }

    private static string SignalLog(string logDirectory, string name) => Path.Combine(logDirectory, name + ".signals");

    // nbdkit has been seen ending (SIGTERM: exit 0 or 143) within ~50 ms of its start on this shared machine,
    // from a sender not yet found; the server is the peer, not what is under test: start it again, twice at most.
    public static async Task<BackendProcess> StartWithRetryAsync(Func<Task<BackendProcess>> start, string? socket, string logDirectory, string name)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                var server = await start();
                // The deaths come within ~50 ms of the start, sometimes after the first accept (CI saw a
                // backend refused on a socket whose server had just gone): a server still up a moment
                // after it accepted is past that window.
                await Task.Delay(300);
                if (server.ExitCode is not { } code) return server;
                string log = server.Log;
                await server.DisposeAsync();
                throw new InvalidOperationException($"{server.Name} exited ({code}) just after accepting:\n{log}");
            }
            catch (InvalidOperationException e) when (e.Message.Contains(" exited (", StringComparison.Ordinal))
            {
                string signals = SignalReport(logDirectory, name);
                if (attempt >= 4) throw new InvalidOperationException(e.Message + "\n" + signals, e);
                string ended = e.Message.Split('\n')[0];
                Console.Error.WriteLine($"[harness] NBD server ended at start, starting it again: {ended}\n{signals}");
                // A retry that works hides the report from the test's output: keep it where a run can be read afterwards.
                if (signals.Length > 0)
                    File.AppendAllText(Path.Combine(Path.GetTempPath(), "sharpvhost-peer-signals.log"), $"{DateTime.UtcNow:O} {ended}\n{signals}");
                if (socket is not null && File.Exists(socket)) File.Delete(socket);
            }
        }
    }

    // The socket file appears at bind(2), a moment before listen(2): wait until a connection is accepted.
    private static async Task<BackendProcess> ListeningAsync(Task<BackendProcess> starting, string socket)
    {
        var server = await starting;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            try
            {
                await probe.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
                return server;
            }
            catch (System.Net.Sockets.SocketException) when (DateTime.UtcNow < deadline)
            {
                if (server.ExitCode is { } code) throw new InvalidOperationException($"{server.Name} exited ({code}) before accepting:\n{server.Log}");
                await Task.Delay(20);
            }
        }
    }

    /// <summary>qemu-nbd serving an image of <paramref name="format"/>, persistent, up to 16 clients at once.</summary>
    public static Task<BackendProcess> QemuNbdAsync(string socket, string image, string format, string logDirectory, string name)
    {
        var qemuNbd = Tools.Require("qemu-nbd", "qemu-utils");
        if (File.Exists(socket)) File.Delete(socket);
        string[] arguments = ["-k", socket, "-f", format, "-t", "-e", "16", "--cache=writeback", "--discard=unmap", image];
        return ListeningAsync(BackendProcess.StartAsync(name, qemuNbd, arguments, [socket], logDirectory), socket);
    }

    /// <summary>Runs qemu-img; returns its exit code and output.</summary>
    public static async Task<(int Code, string Output)> QemuImgAsync(params string[] arguments)
    {
        var start = new System.Diagnostics.ProcessStartInfo(Tools.Require("qemu-img", "qemu-utils"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output + await error);
    }
}
