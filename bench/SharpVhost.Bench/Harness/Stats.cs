namespace SharpVhost.Bench;

/// <summary>Medians and percentiles over measured values.</summary>
public static class Stats
{
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>The <paramref name="p"/>-th percentile (0..100) of values already sorted ascending (nearest rank).</summary>
    public static double PercentileOfSorted(ReadOnlySpan<long> sorted, double p)
    {
        if (sorted.IsEmpty) return double.NaN;
        int rank = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }
}
