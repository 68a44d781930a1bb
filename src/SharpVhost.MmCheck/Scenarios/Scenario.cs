using SharpVhost.MmCheck.Model;
using SharpVhost.MmCheck.Operations;
using SharpVhost.MmCheck.Strategies;

namespace SharpVhost.MmCheck.Scenarios;

/// <summary>The worker's way of reaching the used ring.</summary>
public enum Strategy { CopyUser, GupLongterm, NotifierDirtyAfterRound, MergedV53, IntervalNotifier, PinLongterm, BackendSections, BackendPins }

/// <summary>A concurrent kernel operation on the ring page.</summary>
public enum OperationKind { Writeback, Reclaim, Migration, Munmap, Speculative, ODirect, OomReaper, SetVringAddr, RemMemReg }

public sealed record OperationSpec(OperationKind Kind, int Passes = 1);

/// <summary>Everything one check needs: the configuration of the model and the explorer's bounds.</summary>
public sealed record Scenario
{
    public string Name { get; init; } = "scenario";
    public Strategy Strategy { get; init; } = Strategy.CopyUser;
    public PageKind Page { get; init; } = PageKind.Ext4;
    public int Rounds { get; init; } = 1;
    public IReadOnlyList<OperationSpec> Operations { get; init; } = [];
    public Fixes Fixes { get; init; }
    /// <summary>Merged-v5.3 only: whether prefetch refuses to map while invalidate_count != 0.</summary>
    public bool Guard { get; init; } = true;
    public IReadOnlySet<Rule> Checks { get; init; } = Enum.GetValues<Rule>().ToHashSet();
    public int MaxSteps { get; init; } = 400;
    public int? MaxPreemptions { get; init; }
    /// <summary>What the author expects; only tests compare it with the model's verdict.</summary>
    public string? Expect { get; init; }

    public static readonly (string Name, Strategy Value)[] StrategyNames =
    [
        ("copy-user", Strategy.CopyUser),
        ("gup-longterm", Strategy.GupLongterm),
        ("notifier-dirty-after-round", Strategy.NotifierDirtyAfterRound),
        ("merged-v5.3", Strategy.MergedV53),
        ("interval-notifier", Strategy.IntervalNotifier),
        ("pin-longterm", Strategy.PinLongterm),
    ];

    /// <summary>
    /// Our own backend's rule for asynchronous requests (not the kernel's ring access, so not in the
    /// matrix): a grace period over read sections only, or over sections and in-flight pins.
    /// </summary>
    public static readonly (string Name, Strategy Value)[] BackendStrategyNames =
    [
        ("backend-sections", Strategy.BackendSections),
        ("backend-pins", Strategy.BackendPins),
    ];

    public static readonly (string Name, OperationKind Value)[] OperationNames =
    [
        ("writeback", OperationKind.Writeback),
        ("reclaim", OperationKind.Reclaim),
        ("migration", OperationKind.Migration),
        ("munmap", OperationKind.Munmap),
        ("speculative", OperationKind.Speculative),
        ("odirect", OperationKind.ODirect),
        ("oom-reaper", OperationKind.OomReaper),
        ("set-vring-addr", OperationKind.SetVringAddr),
        ("rem-mem-reg", OperationKind.RemMemReg),
    ];

    public static string NameOf(Strategy s) => StrategyNames.Concat(BackendStrategyNames).First(n => n.Value == s).Name;

    public static string NameOf(OperationKind o) => OperationNames.First(n => n.Value == o).Name;

    /// <summary>Builds a fresh machine (each explorer thread needs its own).</summary>
    public Machine Build()
    {
        var fixes = Fixes;
        if (Strategy == Strategy.PinLongterm) fixes |= Fixes.LongtermFileRefused | Fixes.AnonExclusivePin;
        var k = new Kernel(Page, fixes);
        var actors = new List<Actor>();
        Worker worker = Strategy switch
        {
            Strategy.CopyUser => new CopyUser(k, "worker", Rounds),
            Strategy.GupLongterm => new GupLongterm(k, "worker", Rounds, modern: false),
            Strategy.PinLongterm => new GupLongterm(k, "worker", Rounds, modern: true),
            Strategy.NotifierDirtyAfterRound => new NotifierDirtyAfterRound(k, "worker", Rounds),
            Strategy.MergedV53 => new MergedRcu(k, "worker", Rounds, Guard),
            Strategy.IntervalNotifier => new IntervalNotifier(k, "worker", Rounds),
            Strategy.BackendSections => new AsyncBackendWorker(k, "worker", pins: false),
            Strategy.BackendPins => new AsyncBackendWorker(k, "worker", pins: true),
            _ => throw new ArgumentOutOfRangeException(nameof(Strategy)),
        };
        k.Subscriber = worker as INotifierSubscriber;
        actors.Add(worker);
        var seen = new Dictionary<OperationKind, int>();
        foreach (var op in Operations)
        {
            seen[op.Kind] = seen.GetValueOrDefault(op.Kind) + 1;
            string name = NameOf(op.Kind) + (seen[op.Kind] > 1 ? seen[op.Kind].ToString() : "");
            actors.Add(op.Kind switch
            {
                OperationKind.Writeback => new Writeback(k, name, op.Passes),
                OperationKind.Reclaim => new Reclaim(k, name),
                OperationKind.Migration => new Migration(k, name),
                OperationKind.Munmap => new Munmap(k, name),
                OperationKind.Speculative => new SpeculativeLookup(k, name, op.Passes),
                OperationKind.ODirect => new ODirect(k, name),
                OperationKind.OomReaper => new OomReaper(k, name),
                OperationKind.SetVringAddr => new SetVringAddr(k, name),
                OperationKind.RemMemReg => new RemMemReg(k, name),
                _ => throw new ArgumentOutOfRangeException(nameof(op)),
            });
        }
        return new Machine(k, actors, Checks) { Factory = Build };
    }

    public string Summary =>
        $"{NameOf(Strategy)} on {Page.Name()}, {Rounds} round(s), with {(Operations.Count == 0 ? "nothing else" : string.Join(", ", Operations.Select(o => NameOf(o.Kind) + (o.Passes > 1 ? $" x{o.Passes}" : ""))))}" +
        (Fixes != Fixes.None ? $", fixes: {string.Join(", ", FixNames.All.Where(f => (Fixes & f.Fix) != 0).Select(f => f.Name))}" : "") +
        (Strategy == Strategy.MergedV53 && !Guard ? ", guard off" : "");
}
