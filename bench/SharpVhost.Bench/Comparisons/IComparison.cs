using SharpVhost.Bench.Report;

namespace SharpVhost.Bench.Comparisons;

/// <summary>One side-by-side comparison of the issue: runs both contenders and fills in the result.</summary>
public interface IComparison
{
    /// <summary>Short name for <c>--only</c> and the JSON.</summary>
    string Name { get; }
    string Title { get; }
    void Run(BenchContext context, ComparisonResult result);
}
