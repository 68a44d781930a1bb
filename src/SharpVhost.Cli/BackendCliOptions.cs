using System.CommandLine;
using Microsoft.Extensions.Logging;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Cli;

/// <summary>
/// The options every backend command shares (blk, net): how queues run, which fds are accepted,
/// and how it runs as a service (client mode, log level, pid file, the socket file's access).
/// </summary>
internal sealed class BackendCliOptions
{
    public Option<bool> Client { get; } = new("--client")
    {
        Description = "Connect to --socket-path, which the frontend listens on (QEMU -chardev socket,server=on; libvirt mode='server'; OVS dpdkvhostuserclient), and connect again whenever the frontend goes away",
    };
    public Option<string> LogLevel { get; } = new("--log-level") { Description = "trace, debug, info (default), warning, error, critical or none", DefaultValueFactory = _ => "info" };
    public Option<bool> Verbose { get; } = new("--verbose", "-v") { Description = "Debug logging (--log-level debug)" };
    public Option<string?> PidFile { get; } = new("--pidfile") { Description = "Write the process id to this file while running (removed at exit)" };
    public Option<string?> SocketGroup { get; } = new("--socket-group") { Description = "Group (name or gid) of the socket file created for --socket-path" };
    public Option<string?> SocketMode { get; } = new("--socket-mode") { Description = "Octal permission bits of the socket file created for --socket-path (e.g. 0660)" };
    public Option<bool> PrintCapabilities { get; } = new("--print-capabilities") { Description = "Print the backend's capabilities as JSON (vhost-user.json) and exit, whatever the other options" };

    public Option<MetadataAccess> Metadata { get; } = new("--metadata") { Description = "Ring metadata accessor: direct (default) or checked", DefaultValueFactory = _ => MetadataAccess.Direct };
    public Option<bool> BusyPoll { get; } = new("--busy-poll") { Description = "Workers poll the rings instead of sleeping on kicks" };
    public Option<int> PollMicroseconds { get; } = new("--poll-us")
    {
        Description = "Longest a worker polls its ring before sleeping on the kick, adaptive below this (0: never poll)",
        DefaultValueFactory = _ => (int)BackendOptions.DefaultPollMax.TotalMicroseconds,
    };
    public Option<bool> RequireSealedMemory { get; } = new("--require-sealed-memory")
    {
        Description = "Refuse memory, log and inflight fds that cannot be sealed against shrinking (a frontend truncating one could end the backend with SIGBUS); QEMU's memory-backend-memfd passes, file-backed memory does not",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Metadata);
        command.Options.Add(BusyPoll);
        command.Options.Add(PollMicroseconds);
        command.Options.Add(RequireSealedMemory);
        command.Options.Add(Client);
        command.Options.Add(LogLevel);
        command.Options.Add(Verbose);
        command.Options.Add(PidFile);
        command.Options.Add(SocketGroup);
        command.Options.Add(SocketMode);
        command.Options.Add(PrintCapabilities);
    }

    /// <summary>The level --log-level names; --verbose means debug at least.</summary>
    public LogLevel ReadLogLevel(ParseResult parse)
    {
        var level = CliHost.ParseLogLevel(parse.GetValue(LogLevel) ?? "info");
        return parse.GetValue(Verbose) && level > Microsoft.Extensions.Logging.LogLevel.Debug ? Microsoft.Extensions.Logging.LogLevel.Debug : level;
    }

    /// <summary>--socket-mode and --socket-group, or null when neither is given (throws FormatException/ArgumentException).</summary>
    public SocketFileAccess? ReadSocketAccess(ParseResult parse)
    {
        string? mode = parse.GetValue(SocketMode), group = parse.GetValue(SocketGroup);
        if (mode is null && group is null) return null;
        return new SocketFileAccess(mode is null ? null : SocketFileAccess.ParseMode(mode), group is null ? null : FileOwnership.ResolveGroup(group));
    }

    public BackendOptions Read(ParseResult parse) => new()
    {
        Metadata = parse.GetValue(Metadata),
        BusyPoll = parse.GetValue(BusyPoll),
        PollMax = TimeSpan.FromMicroseconds(Math.Max(0, parse.GetValue(PollMicroseconds))),
        RequireSealedMemory = parse.GetValue(RequireSealedMemory),
    };
}
