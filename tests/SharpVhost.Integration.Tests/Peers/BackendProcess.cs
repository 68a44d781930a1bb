using System.Diagnostics;
using System.Text;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// A vhost-user backend program run for one test: started with its arguments, ready once all
/// its listening sockets exist, stopped (SIGTERM, then SIGKILL) on dispose. Its stdout and
/// stderr are kept for failure messages and written to NAME.log in the log directory.
/// </summary>
public sealed class BackendProcess : IRunningBackend
{
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(5);

    private readonly Process _process;
    private readonly StringBuilder _log = new();
    private readonly string _logPath;

    private BackendProcess(string name, Process process, string logPath)
    {
        Name = name;
        _process = process;
        _logPath = logPath;
    }

    public string Name { get; }

    /// <summary>The program's process id (for /proc checks at the system-call boundary; under systemd-socket-activate, which execs it, the backend's own).</summary>
    public int ProcessId => _process.Id;

    public string Log
    {
        get { lock (_log) return _log.ToString(); }
    }

    /// <summary>Exit code after dispose (or after the process ended by itself).</summary>
    public int? ExitCode => _exitCode ?? (_process.HasExited ? _process.ExitCode : null);

    private int? _exitCode;

    /// <summary>
    /// Starts <paramref name="program"/> and waits until every path in
    /// <paramref name="socketPaths"/> exists; fails with the program's output if it exits first
    /// or the sockets do not appear within <paramref name="readyTimeout"/>.
    /// </summary>
    public static async Task<BackendProcess> StartAsync(
        string name, string program, IEnumerable<string> arguments, IReadOnlyList<string> socketPaths,
        string logDirectory, TimeSpan? readyTimeout = null, bool keepStdinOpen = false,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            // Some programs (testpmd) quit at the end of stdin: a pipe we never close keeps them up.
            RedirectStandardInput = keepStdinOpen,
            UseShellExecute = false,
        };
        foreach (var arg in arguments) start.ArgumentList.Add(arg);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        var process = new Process { StartInfo = start };
        var backend = new BackendProcess(name, process, Path.Combine(logDirectory, name + ".log"));
        backend.Append("[harness] " + program + " " + string.Join(" ", start.ArgumentList));
        process.OutputDataReceived += (_, e) => backend.Append(e.Data);
        process.ErrorDataReceived += (_, e) => backend.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var timeout = readyTimeout ?? TimeSpan.FromSeconds(30);
        var watch = Stopwatch.StartNew();
        while (!socketPaths.All(File.Exists))
        {
            if (process.HasExited)
            {
                int code = process.ExitCode; // read before dispose releases the process
                await backend.DisposeAsync();
                throw new InvalidOperationException($"{name} exited ({code}) before listening:\n{backend.Log}");
            }
            if (watch.Elapsed > timeout)
            {
                await backend.DisposeAsync();
                throw new TimeoutException($"{name}: sockets {string.Join(", ", socketPaths)} did not appear within {timeout}:\n{backend.Log}");
            }
            await Task.Delay(20);
        }
        return backend;
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_log) _log.AppendLine(line);
    }

    /// <summary>SIGKILL, no grace: a crash, for the reconnect tests.</summary>
    public async Task CrashAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true); // the tree: a peer may run under a tracer (NbdServers.Nbdkit)
        using var bounded = new CancellationTokenSource(StopGrace);
        await _process.WaitForExitAsync(bounded.Token);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                // A polite stop first so a backend can flush and unlink its socket.
                Signals.Terminate(_process.Id);
                using var grace = new CancellationTokenSource(StopGrace);
                try { await _process.WaitForExitAsync(grace.Token); }
                catch (OperationCanceledException)
                {
                    _process.Kill(entireProcessTree: true);
                    using var bounded = new CancellationTokenSource(StopGrace);
                    try { await _process.WaitForExitAsync(bounded.Token); }
                    catch (OperationCanceledException) { }
                }
            }
        }
        catch (InvalidOperationException) { } // never started
        try { File.WriteAllText(_logPath, Log); } catch (IOException) { }
        try { if (_process.HasExited) _exitCode = _process.ExitCode; } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
