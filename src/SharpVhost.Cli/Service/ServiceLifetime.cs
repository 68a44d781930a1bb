using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace SharpVhost.Cli.Service;

/// <summary>
/// A backend's life as a service: SIGINT/SIGTERM stop it cleanly, SIGHUP is logged and survived
/// (logs go to stderr, which the journal or the caller owns: there is nothing to reopen), the pid
/// file exists while it runs, and systemd hears READY=1 once every socket serves and STOPPING=1 at the end.
/// </summary>
internal sealed class ServiceLifetime : IDisposable
{
    private readonly CancellationTokenSource _cancel = new();
    private readonly List<IDisposable> _signals = [];
    private readonly SystemdNotify _notify;
    private readonly string? _pidFile;
    private int _pendingReady;

    private ServiceLifetime(string? pidFile, SystemdNotify notify, int targets)
    {
        _pidFile = pidFile;
        _notify = notify;
        _pendingReady = targets;
    }

    public CancellationToken Token => _cancel.Token;

    /// <summary>Stops the service from inside (a port failed).</summary>
    public void Stop() => _cancel.Cancel();

    /// <summary>
    /// Starts the lifetime of a service with <paramref name="targets"/> sockets; <paramref name="onHangup"/>
    /// runs on SIGHUP (e.g. logs counters). Writes <paramref name="pidFile"/> if given.
    /// </summary>
    public static ServiceLifetime Start(int targets, string? pidFile, ILogger log, Action? onHangup = null)
    {
        var lifetime = new ServiceLifetime(pidFile, SystemdNotify.FromEnvironment(), targets);
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true; // handled: the process ends normally once the servers return
            log.LogInformation("{Signal}: stopping", context.Signal);
            lifetime._cancel.Cancel();
        }
        lifetime._signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop));
        lifetime._signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop));
        lifetime._signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true; // the default action would end the process
            log.LogInformation("SIGHUP: nothing to reload (logs go to stderr); still serving");
            onHangup?.Invoke();
        }));
        if (pidFile is not null) WritePidFile(pidFile);
        return lifetime;
    }

    /// <summary>One socket serves (listens, or the client loop runs); the last one tells systemd READY=1.</summary>
    public void TargetReady(string status)
    {
        if (Interlocked.Decrement(ref _pendingReady) == 0)
            _notify.Send($"READY=1\nSTATUS={status}\nMAINPID={Environment.ProcessId}");
    }

    // Written whole under a temporary name and renamed, so a reader never sees a partial pid.
    private static void WritePidFile(string path)
    {
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, $"{Environment.ProcessId}\n");
        File.Move(temporary, path, overwrite: true);
    }

    public void Dispose()
    {
        _notify.Send("STOPPING=1");
        _notify.Dispose();
        foreach (var s in _signals) s.Dispose();
        if (_pidFile is not null)
        {
            try { File.Delete(_pidFile); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        _cancel.Dispose();
    }
}
