using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace SharpVhost.Cli;

/// <summary>What every long-running command shares: logging to stderr and a clean exit on SIGINT/SIGTERM.</summary>
internal static class CliHost
{
    public static ILoggerFactory CreateLogging(bool verbose) => LoggerFactory.Create(builder => builder
        .SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Information)
        .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace) // logs go to stderr; stdout is for results
        .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; })
        .AddFilter("Microsoft", LogLevel.Warning));

    /// <summary>A token cancelled by SIGINT or SIGTERM (the signal is then handled: the process exits normally).</summary>
    public static CancellationTokenSource CancelOnSignals(out IDisposable registrations)
    {
        var cts = new CancellationTokenSource();
        void Handler(PosixSignalContext context)
        {
            context.Cancel = true;
            cts.Cancel();
        }
        var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Handler);
        var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handler);
        registrations = new Registrations(sigint, sigterm);
        return cts;
    }

    private sealed class Registrations(params IDisposable[] items) : IDisposable
    {
        public void Dispose() { foreach (var i in items) i.Dispose(); }
    }
}
