using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Explorer;

/// <summary>One step of a counterexample: which actor (CPU) took which kernel step.</summary>
public sealed record TraceStep(int Actor, string ActorName, string Label);

public enum Verdict { Safe, Violation }

/// <summary>What an exploration found and what it cost.</summary>
public sealed record ExplorationResult
{
    public required Verdict Verdict { get; init; }
    public Rule? Rule { get; init; }
    public string? Detail { get; init; }
    public IReadOnlyList<TraceStep> Trace { get; init; } = [];
    public long States { get; init; }
    public long Transitions { get; init; }
    public TimeSpan Elapsed { get; init; }
    /// <summary>True when the step or preemption bound cut some path short (the verdict holds within the bound only).</summary>
    public bool BoundHit { get; init; }
    public int MaxDepth { get; init; }
    public string Mode { get; init; } = "dfs";

    public double StatesPerSecond => Elapsed.TotalSeconds > 0 ? States / Elapsed.TotalSeconds : 0;
}

/// <summary>Progress of a long run, reported every couple of seconds.</summary>
public readonly record struct Progress(long States, int Depth, double StatesPerSecond);

/// <summary>Explorer bounds and knobs.</summary>
public sealed record ExploreOptions
{
    public int MaxSteps { get; init; } = 400;
    /// <summary>When set, bound preemptions instead of using partial-order reduction (the two do not compose soundly).</summary>
    public int? MaxPreemptions { get; init; }
    public bool PartialOrderReduction { get; init; } = true;
    public int Threads { get; init; } = Environment.ProcessorCount;
    public Action<Progress>? OnProgress { get; init; }
    public CancellationToken Cancel { get; init; }
}
