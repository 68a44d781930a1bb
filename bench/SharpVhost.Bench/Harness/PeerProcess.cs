using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;

namespace SharpVhost.Bench;

/// <summary>
/// A backend or peer program started for a benchmark, pinned to one CPU with taskset. Its output is
/// kept (the last lines, for error messages) and can be watched line by line. Disposing kills it
/// (and its children) and waits for it: no benchmark leaves a process behind.
/// </summary>
public sealed class PeerProcess : IDisposable
{
    private const int KeptLines = 40;
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lastLines = new();
    private readonly long _startTimestamp;

    public string Name { get; }
    public int Pid => _process.Id;
    public string CommandLine { get; }
    public long StartTimestamp => _startTimestamp;
    public bool HasExited => _process.HasExited;

    /// <summary>Called for every output line (stdout and stderr), on a reader thread.</summary>
    public event Action<string>? Line;

    /// <summary>Raised once the program has exited (for clean-up of what it leaves behind).</summary>
    public event Action? Exited;

    private PeerProcess(string name, Process process, string commandLine, long started)
    {
        Name = name;
        _process = process;
        CommandLine = commandLine;
        _startTimestamp = started;
    }

    /// <summary>Starts <paramref name="program"/> with <paramref name="args"/>, pinned to <paramref name="cpu"/> (all CPUs if null).</summary>
    public static PeerProcess Start(string name, int? cpu, string program, IEnumerable<string> args, Action<string>? onLine = null,
        IDictionary<string, string>? environment = null)
    {
        var argList = args.ToList();
        var info = new ProcessStartInfo
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        if (cpu is { } c)
        {
            info.FileName = Tools.Taskset;
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add(c.ToString());
            info.ArgumentList.Add(program);
        }
        else info.FileName = program;
        foreach (var a in argList) info.ArgumentList.Add(a);
        if (environment is not null) foreach (var (k, v) in environment) info.Environment[k] = v;
        string commandLine = string.Join(' ', new[] { info.FileName }.Concat(info.ArgumentList));
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        long started = Stopwatch.GetTimestamp();
        if (!process.Start()) throw new IOException($"{name}: could not start {commandLine}");
        var peer = new PeerProcess(name, process, commandLine, started);
        if (onLine is not null) peer.Line += onLine;
        process.Exited += (_, _) => peer.Exited?.Invoke();
        process.OutputDataReceived += (_, e) => peer.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => peer.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return peer;
    }

    private void Keep(string? line)
    {
        if (line is null) return;
        _lastLines.Enqueue(line);
        while (_lastLines.Count > KeptLines) _lastLines.TryDequeue(out _);
        Line?.Invoke(line);
    }

    /// <summary>The last lines the program printed (for error messages).</summary>
    public string Tail() => string.Join('\n', _lastLines);

    /// <summary>
    /// Waits until a Unix socket at <paramref name="path"/> accepts a connection (the connection is closed
    /// at once). Returns the time from process start; throws if the program exits or the time runs out.
    /// </summary>
    public TimeSpan WaitForSocket(string path, TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            if (_process.HasExited) throw new IOException($"{Name} exited with code {_process.ExitCode} before listening on {path}:\n{Tail()}");
            if (File.Exists(path))
            {
                using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    probe.Connect(new UnixDomainSocketEndPoint(path));
                    return Stopwatch.GetElapsedTime(_startTimestamp);
                }
                catch (SocketException) { }
            }
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"{Name} did not listen on {path} within {timeout.TotalSeconds:F0} s:\n{Tail()}");
            Thread.Sleep(1);
        }
    }

    /// <summary>Sends SIGINT (DPDK prints its final statistics on it) and waits up to <paramref name="timeout"/> for the exit.</summary>
    public bool Interrupt(TimeSpan timeout)
    {
        if (_process.HasExited) return true;
        Tools.Run("kill", "-INT", _process.Id.ToString());
        return _process.WaitForExit(timeout);
    }

    /// <summary>
    /// Freezes the program (SIGSTOP) while another contender is measured on the same CPU. DPDK's lcores
    /// poll even with nothing connected: left running, an idle testpmd took half of the backend CPU from
    /// the backend being measured.
    /// </summary>
    public void Pause()
    {
        if (!_process.HasExited) Tools.Run("kill", "-STOP", _process.Id.ToString());
    }

    /// <summary>Lets a <see cref="Pause"/>d program run again (SIGCONT; harmless on one that runs).</summary>
    public void Resume()
    {
        if (!_process.HasExited) Tools.Run("kill", "-CONT", _process.Id.ToString());
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
