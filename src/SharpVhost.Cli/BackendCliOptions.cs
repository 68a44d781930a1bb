using System.CommandLine;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Cli;

/// <summary>The options every backend command shares (blk, net): how queues run and which fds are accepted.</summary>
internal sealed class BackendCliOptions
{
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
    }

    public BackendOptions Read(ParseResult parse) => new()
    {
        Metadata = parse.GetValue(Metadata),
        BusyPoll = parse.GetValue(BusyPoll),
        PollMax = TimeSpan.FromMicroseconds(Math.Max(0, parse.GetValue(PollMicroseconds))),
        RequireSealedMemory = parse.GetValue(RequireSealedMemory),
    };
}
