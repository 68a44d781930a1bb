using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tool;

/// <summary>How to run one scenario.</summary>
public sealed record CheckOptions
{
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>Overrides the scenario's step bound.</summary>
    public int? MaxSteps { get; init; }
    public int? MaxPreemptions { get; init; }
    /// <summary>When set, random walks instead of the exhaustive search.</summary>
    public long? RandomWalks { get; init; }
    public int Seed { get; init; } = 1;
    public bool PartialOrderReduction { get; init; } = true;
    public Action<Progress>? OnProgress { get; init; }
}

/// <summary>The outcome of checking a scenario: the search's verdict and, on a violation, the shortest trace.</summary>
public sealed record CheckReport(Scenario Scenario, ExplorationResult Search, ExplorationResult? Shortest)
{
    public Verdict Verdict => Search.Verdict;

    /// <summary>The counterexample to show: the shortest one when found.</summary>
    public ExplorationResult Counterexample => Shortest is { Verdict: Verdict.Violation } s ? s : Search;
}

/// <summary>Runs a scenario: exhaustive DFS (or random walks) for the verdict, then BFS for the shortest trace.</summary>
public static class Checker
{
    public static CheckReport Check(Scenario scenario, CheckOptions? options = null)
    {
        options ??= new CheckOptions();
        var eo = new ExploreOptions
        {
            MaxSteps = options.MaxSteps ?? scenario.MaxSteps,
            MaxPreemptions = options.MaxPreemptions ?? scenario.MaxPreemptions,
            Threads = options.Threads,
            PartialOrderReduction = options.PartialOrderReduction,
            OnProgress = options.OnProgress,
        };
        ExplorationResult search = options.RandomWalks is long walks
            ? new RandomWalk(scenario.Build, eo, walks, options.Seed).Run()
            : new DfsExplorer(scenario.Build, eo).Run();
        ExplorationResult? shortest = null;
        if (search.Verdict == Verdict.Violation)
            shortest = new BfsExplorer(scenario.Build(), eo with { MaxPreemptions = null }).Run();
        return new CheckReport(scenario, search, shortest);
    }
}
