using Microsoft.Extensions.Logging;
using SharpVhost.Devices.Block;
using SharpVhost.Devices.Block.Nbd;
using SharpVhost.Interop;

namespace SharpVhost.Integration.Tests.Block.Nbd;

/// <summary>Drives an <see cref="NbdQueueEngine"/> the way a queue's thread does: enqueue, submit once, wait on the completion fd, reap.</summary>
internal static class NbdEngineHarness
{
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    public static NbdQueueEngine Open(string uri, int depth, NbdClientOptions? options = null, ListLogger? log = null)
        => new(new NbdConnector(NbdUri.Parse(uri), options ?? new NbdClientOptions(), log ?? new ListLogger()), depth);

    /// <summary>Waits until <paramref name="count"/> completions were reaped (bounded); returns them by token.</summary>
    public static Dictionary<ulong, int> ReapAll(NbdQueueEngine engine, int count)
    {
        var results = new Dictionary<ulong, int>();
        var into = new BlockCompletion[64];
        var deadline = DateTime.UtcNow + Bound;
        while (results.Count < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"only {results.Count} of {count} completions within {Bound}");
            EventFd.WaitAny([engine.CompletionFd], 1000);
            int n = engine.Reap(into);
            for (int i = 0; i < n; i++) results.Add(into[i].Token, into[i].Result);
        }
        return results;
    }

    public static int RunOne(NbdQueueEngine engine, BlockOperationKind kind, long offset, NativeBuffer? buffer, int length, ulong token = 1)
    {
        ReadOnlySpan<IoSegment> segments = buffer is null ? [] : [new IoSegment(buffer.Address, length)];
        Assert.True(engine.Enqueue(new BlockOperation(kind, offset, length, segments, token)));
        engine.Submit();
        return ReapAll(engine, 1)[token];
    }

    public static void Fill(Span<byte> span, int seed)
    {
        var random = new Random(seed);
        random.NextBytes(span);
    }

    public static void WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"{what}: not within {Bound}");
            Thread.Sleep(20);
        }
    }
}

/// <summary>A logger that keeps its lines, so that tests can check that a dropped connection says why.</summary>
internal sealed class ListLogger : ILogger
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines
    {
        get { lock (_lines) return [.. _lines]; }
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines) _lines.Add($"{logLevel}: {formatter(state, exception)}");
    }
}
