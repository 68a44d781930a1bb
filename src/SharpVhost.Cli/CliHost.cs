using Microsoft.Extensions.Logging;

namespace SharpVhost.Cli;

/// <summary>What every long-running command shares: logging to stderr at a chosen level.</summary>
internal static class CliHost
{
    public static ILoggerFactory CreateLogging(bool verbose) => CreateLogging(verbose ? LogLevel.Debug : LogLevel.Information);

    public static ILoggerFactory CreateLogging(LogLevel level) => LoggerFactory.Create(builder => builder
        .SetMinimumLevel(level)
        .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace) // logs go to stderr; stdout is for results
        .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; })
        .AddFilter("Microsoft", LogLevel.Warning));

    /// <summary>--log-level's words: the ones systemd and QEMU users type as well as .NET's names.</summary>
    public static LogLevel ParseLogLevel(string word) => word.ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" or "information" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "critical" => LogLevel.Critical,
        "none" or "off" => LogLevel.None,
        _ => throw new FormatException($"unknown log level '{word}' (trace, debug, info, warning, error, critical, none)"),
    };
}
