using System.Diagnostics;
using System.Text;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Guest;

/// <summary>
/// One Linux guest under qemu-system-x86_64 (TCG) with shared memfd memory, so vhost-user
/// backends can map it. Captures the serial console, finds the /init markers, and kills QEMU
/// on dispose whatever happened.
/// </summary>
public sealed class QemuGuest : IAsyncDisposable
{
    public const string BeginMarker = "SHARPVHOST-GUEST-BEGIN";
    public const string ExitMarker = "SHARPVHOST-GUEST-EXIT=";

    // After the script's exit marker the guest only syncs and powers off.
    private static readonly TimeSpan PowerOffGrace = TimeSpan.FromSeconds(20);

    private readonly QemuGuestOptions _options;
    private readonly Process _process;
    private readonly StringBuilder _console = new();
    private readonly object _consoleLock = new();
    private readonly TaskCompletionSource<int> _exitMarkerSeen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly StreamWriter _consoleLog;
    private bool _consoleLogClosed;
    private bool _disposed;
    private bool _exitedAtDispose;

    private QemuGuest(QemuGuestOptions options, Process process, StreamWriter consoleLog)
    {
        _options = options;
        _process = process;
        _consoleLog = consoleLog;
    }

    public string Name => _options.Name;

    /// <summary>True once QEMU is gone; after dispose, whether killing it worked.</summary>
    public bool HasExited => _disposed ? _exitedAtDispose : _process.HasExited;

    /// <summary>Everything QEMU and the guest printed so far (serial console and QEMU's stderr).</summary>
    public string Console
    {
        get { lock (_consoleLock) return _console.ToString(); }
    }

    /// <summary>Starts QEMU; the vhost-user backends must already listen on their sockets.</summary>
    public static QemuGuest Start(QemuGuestOptions options)
    {
        var qemu = Tools.Require("qemu-system-x86_64", "qemu-system-x86");
        var start = new ProcessStartInfo(qemu)
        {
            RedirectStandardInput = true, // -nographic reads the monitor escape from stdin: give it a quiet pipe
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in Arguments(options)) start.ArgumentList.Add(arg);

        var consoleLog = new StreamWriter(Path.Combine(options.WorkDirectory, options.Name + ".console.log")) { AutoFlush = true };
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var guest = new QemuGuest(options, process, consoleLog);
        process.OutputDataReceived += (_, e) => guest.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => guest.OnLine(e.Data is null ? null : "[qemu stderr] " + e.Data);
        guest.OnLine("[harness] " + qemu + " " + string.Join(" ", start.ArgumentList));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return guest;
    }

    /// <summary>The QEMU command line for <paramref name="options"/>.</summary>
    public static IEnumerable<string> Arguments(QemuGuestOptions options)
    {
        var size = $"{options.MemoryMiB}M";
        // no_timer_check: on a loaded host a TCG guest's early IO-APIC timer test can miss its
        // ticks and panic ("IO-APIC + timer doesn't work"); the check is meaningless here.
        var append = new StringBuilder("console=ttyS0 quiet panic=-1 no_timer_check");
        foreach (var word in options.ExtraKernelArguments) append.Append(' ').Append(word);
        foreach (var (name, value) in options.Parameters)
        {
            if (value.Any(char.IsWhiteSpace)) throw new ArgumentException($"guest parameter {name} must not contain spaces");
            append.Append($" SV_{name}={value}");
        }
        string[] common =
        [
            "-accel", "tcg,thread=multi",
            "-m", size,
            "-smp", options.Cpus.ToString(),
            "-nographic", "-no-reboot",
            // vhost-user backends map guest RAM: it must be a shareable fd, one NUMA node over it.
            "-object", $"memory-backend-memfd,id=mem,size={size},share=on",
            "-numa", "node,memdev=mem",
            "-kernel", options.Kernel.ImagePath,
            "-initrd", options.Initramfs,
            "-append", append.ToString(),
            "-nic", "none",
        ];
        return common
            .Concat(options.ExtraQemuArguments)
            .Concat(options.Devices.SelectMany((device, i) => device.QemuArguments(i)));
    }

    /// <summary>
    /// Waits for the guest script to finish and QEMU to exit, bounded by the options' timeout.
    /// Throws <see cref="GuestFailedException"/> (with the console) on a hang or a crash.
    /// </summary>
    public async Task<GuestRun> WaitAsync()
    {
        var deadline = Task.Delay(_options.Timeout);
        var exited = _process.WaitForExitAsync();
        var first = await Task.WhenAny(_exitMarkerSeen.Task, exited, deadline);
        if (first == deadline)
            Fail($"no {ExitMarker} within {_options.Timeout.TotalSeconds:0} s (guest hung)");
        if (!_exitMarkerSeen.Task.IsCompleted)
        {
            // QEMU ended on its own; its last output lines may still be on their way.
            await Task.WhenAny(_exitMarkerSeen.Task, Task.Delay(TimeSpan.FromSeconds(1)));
            if (!_exitMarkerSeen.Task.IsCompleted)
                Fail($"QEMU exited ({_process.ExitCode}) before the guest script finished");
        }
        var status = await _exitMarkerSeen.Task;
        if (await Task.WhenAny(exited, Task.Delay(PowerOffGrace)) != exited)
            Fail($"guest did not power off within {PowerOffGrace.TotalSeconds:0} s of its script's end");
        return new GuestRun(Name, status, ScriptOutput(), Console, _options.PeerLog?.Invoke() ?? "");
    }

    /// <summary>Starts, waits, disposes: the usual single-guest run.</summary>
    public static async Task<GuestRun> RunAsync(QemuGuestOptions options)
    {
        await using var guest = Start(options);
        return await guest.WaitAsync();
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        line = line.TrimEnd('\r');
        lock (_consoleLock) _console.AppendLine(line);
        lock (_consoleLog)
        {
            if (!_consoleLogClosed) _consoleLog.WriteLine(line);
        }
        var at = line.IndexOf(ExitMarker, StringComparison.Ordinal);
        if (at >= 0 && int.TryParse(line.AsSpan(at + ExitMarker.Length).Trim(), out var status))
            _exitMarkerSeen.TrySetResult(status);
    }

    // The lines between the markers: what the guest script printed (plus any kernel messages).
    private List<string> ScriptOutput()
    {
        var lines = Console.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        var begin = lines.FindIndex(l => l.Contains(BeginMarker, StringComparison.Ordinal));
        var end = lines.FindIndex(l => l.Contains(ExitMarker, StringComparison.Ordinal));
        return begin >= 0 && end > begin ? lines.GetRange(begin + 1, end - begin - 1) : [];
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void Fail(string why) =>
        throw new GuestFailedException(
            $"{Name}: {why}.\n--- console ---\n{Console}" +
            (_options.PeerLog is { } peerLog ? $"\n--- peer log ---\n{peerLog()}" : ""));

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                try { await _process.WaitForExitAsync(bounded.Token); }
                catch (OperationCanceledException) { } // SIGKILL was sent; nothing more we can do
            }
        }
        catch (InvalidOperationException) { } // never started
        try { _exitedAtDispose = _process.HasExited; }
        catch (InvalidOperationException) { _exitedAtDispose = true; } // never started
        _disposed = true;
        _process.Dispose();
        lock (_consoleLog)
        {
            _consoleLogClosed = true;
            _consoleLog.Dispose();
        }
    }
}
