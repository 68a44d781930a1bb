namespace SharpVhost.Bench.Report;

/// <summary>Which way a metric is better.</summary>
public enum Better
{
    Higher,
    Lower,
}

/// <summary>
/// One line of a comparison: our median against the peer's median for one metric, their ratio
/// (ours / peer), and the target the ratio should meet. A line without a target is informational.
/// </summary>
public sealed record ResultRow
{
    public required string Case { get; init; }
    public required string Metric { get; init; }
    public required string Unit { get; init; }
    public required string Peer { get; init; }
    public required double Ours { get; init; }
    public required double PeerValue { get; init; }
    public required Better Better { get; init; }
    /// <summary>The ratio the issue asks for (at least, or at most, by <see cref="Better"/>); null: no target.</summary>
    public double? Target { get; init; }
    public int Repetitions { get; init; }
    /// <summary>Every repetition's value for ours and the peer, in run order (medians are taken over these).</summary>
    public double[] OursSamples { get; init; } = [];
    public double[] PeerSamples { get; init; } = [];

    public double Ratio => PeerValue == 0 ? double.NaN : Ours / PeerValue;

    public bool? MeetsTarget => Target is not { } t || double.IsNaN(Ratio) ? null : Better == Better.Higher ? Ratio >= t : Ratio <= t;
}

/// <summary>A line that could not be measured, with the reason (never a made-up number).</summary>
public sealed record UnavailableRow(string Case, string Reason);

/// <summary>The outcome of one comparison: measured lines and lines that were not available.</summary>
public sealed class ComparisonResult(string name, string title)
{
    public string Name { get; } = name;
    public string Title { get; } = title;
    public List<ResultRow> Rows { get; } = [];
    public List<UnavailableRow> Unavailable { get; } = [];
    /// <summary>How the two sides were placed on CPUs for this comparison.</summary>
    public string Pinning { get; set; } = "";
    public List<string> Notes { get; } = [];
    public string? Error { get; set; }
    public double Seconds { get; set; }
}

/// <summary>A whole run: the machine, the settings, every comparison.</summary>
public sealed class BenchReport
{
    public required MachineInfo Machine { get; init; }
    public required DateTime StartedUtc { get; init; }
    public required bool Quick { get; init; }
    public required int Repetitions { get; init; }
    public required double MeasureSeconds { get; init; }
    public List<ComparisonResult> Comparisons { get; } = [];
}
