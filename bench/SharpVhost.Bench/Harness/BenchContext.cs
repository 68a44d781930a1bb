namespace SharpVhost.Bench;

/// <summary>Settings of a run: how long and how often to measure, which comparisons to run.</summary>
public sealed record BenchOptions
{
    /// <summary>Smoke run: one short repetition of everything (CI checks only that numbers come out).</summary>
    public bool Quick { get; init; }
    /// <summary>Run only the comparisons whose name contains this (case-insensitive).</summary>
    public string? Only { get; init; }
    public int? Repetitions { get; init; }
    public double? Seconds { get; init; }

    public int EffectiveRepetitions => Repetitions ?? (Quick ? 1 : 5);
    public TimeSpan Measure => TimeSpan.FromSeconds(Seconds ?? (Quick ? 0.2 : 1.0));
    public TimeSpan Warmup => TimeSpan.FromSeconds(Quick ? 0.05 : 0.25);
}

/// <summary>What every comparison gets: options, CPU placement, how to start our backend, a scratch directory, a log.</summary>
public sealed class BenchContext(BenchOptions options, CpuPlan cpus, SharpVhostCommand self, string workDirectory, Action<string> log)
{
    public BenchOptions Options { get; } = options;
    public CpuPlan Cpus { get; } = cpus;
    public SharpVhostCommand Self { get; } = self;
    public string WorkDirectory { get; } = workDirectory;
    public int Repetitions => Options.EffectiveRepetitions;
    public bool Quick => Options.Quick;

    public void Log(string message) => log(message);

    /// <summary>A fresh socket path in the scratch directory.</summary>
    public string SocketPath(string name) => Path.Combine(WorkDirectory, $"{name}-{Interlocked.Increment(ref _sockets)}.sock");
    private int _sockets;

    /// <summary>Ours first on even repetitions, the peer first on odd ones: neither side always runs on a warmer machine.</summary>
    public static bool OursFirst(int repetition) => repetition % 2 == 0;
}
