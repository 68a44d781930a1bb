using System.Diagnostics;
using SharpVhost.Devices.Block;

namespace SharpVhost.Bench;

public enum BlockOperation
{
    RandomRead,
    RandomWrite,
    SequentialRead,
}

/// <summary>One block workload: operation, request size, requests in flight, the span of the disk it covers.</summary>
public sealed record BlockLoadSpec(BlockOperation Operation, int BlockSize, int QueueDepth, long SpanBytes, TimeSpan Warmup, TimeSpan Duration)
{
    public string Label => $"{Operation switch { BlockOperation.RandomRead => "randread", BlockOperation.RandomWrite => "randwrite", _ => "seqread" }} " +
        $"{(BlockSize >= 1 << 20 ? $"{BlockSize >> 20} MiB" : $"{BlockSize >> 10} KiB")} QD{QueueDepth}";
}

/// <summary>What one run of a workload measured.</summary>
public sealed record BlockLoadResult(long Requests, TimeSpan Elapsed, double P50Microseconds, double P99Microseconds, int BlockSize)
{
    public double Iops => Requests / Elapsed.TotalSeconds;
    public double BytesPerSecond => Iops * BlockSize;
}

/// <summary>
/// Drives a <see cref="BlockClient"/> with <c>QueueDepth</c> concurrent request loops, like fio's
/// io_depth: each loop issues its next request when the previous one completes. Requests issued
/// during the warm-up are not counted; every counted request's latency is recorded, and the rate is
/// counted requests over the time from the end of the warm-up to the last one's completion.
/// </summary>
public static class BlockLoad
{
    /// <summary>Buffers for <paramref name="depth"/> loops of <paramref name="blockSize"/> bytes in the client's shared memory.</summary>
    public static SharedBuffer[] AllocateBuffers(BlockClient client, int depth, int blockSize)
        => Enumerable.Range(0, depth).Select(_ => client.AllocateBuffer(blockSize)).ToArray();

    /// <summary>A measurement counts at least this many requests, running past its duration if it must (a stalled machine).</summary>
    public const int MinRequests = 16;

    public static BlockLoadResult Run(BlockClient client, SharedBuffer[] buffers, BlockLoadSpec spec)
    {
        if (buffers.Length < spec.QueueDepth) throw new ArgumentException("one buffer per request in flight");
        long blocks = Math.Min(spec.SpanBytes, client.Capacity) / spec.BlockSize;
        if (blocks < 1) throw new ArgumentException("the disk is smaller than one request");
        long start = Stopwatch.GetTimestamp();
        var window = new Window(start + Ticks(spec.Warmup), start + Ticks(spec.Warmup) + Ticks(spec.Duration));
        var latencies = new List<long>[spec.QueueDepth];
        var loops = new Task[spec.QueueDepth];
        for (int w = 0; w < spec.QueueDepth; w++)
        {
            int worker = w;
            latencies[w] = new List<long>(1 << 14);
            loops[w] = Task.Run(() => Loop(client, buffers[worker].Slice(0, spec.BlockSize), spec, blocks, worker, window, latencies[worker]));
        }
        // A backend that stops answering must not hang the run: the caller disposes it, failing what is pending.
        if (!Task.WaitAll(loops, spec.Warmup + spec.Duration + TimeSpan.FromSeconds(60)))
            throw new TimeoutException($"{spec.Label}: requests did not complete within a minute of the measurement's end");
        long elapsed = Math.Max(1, window.LastCompletion - window.MeasureFrom);
        var all = latencies.SelectMany(l => l).ToArray();
        Array.Sort(all);
        double toMicroseconds = 1e6 / Stopwatch.Frequency;
        // Counted requests were issued after the warm-up; the window runs to the last of them completing.
        return new BlockLoadResult(all.Length, TimeSpan.FromSeconds((double)elapsed / Stopwatch.Frequency),
            Stats.PercentileOfSorted(all, 50) * toMicroseconds, Stats.PercentileOfSorted(all, 99) * toMicroseconds, spec.BlockSize);
    }

    /// <summary>The measured window, shared by the loops: when counting starts, when issuing stops, what was counted.</summary>
    private sealed class Window(long measureFrom, long end)
    {
        public long MeasureFrom { get; } = measureFrom;
        public long End { get; } = end;
        private long _counted, _lastCompletion;
        public long LastCompletion => Interlocked.Read(ref _lastCompletion);

        public bool Over(long now) => now >= End && Interlocked.Read(ref _counted) >= MinRequests;

        public void Count(long done)
        {
            Interlocked.Increment(ref _counted);
            long last;
            while (done > (last = Interlocked.Read(ref _lastCompletion)) && Interlocked.CompareExchange(ref _lastCompletion, done, last) != last) { }
        }
    }

    private static async Task Loop(BlockClient client, SharedBuffer buffer, BlockLoadSpec spec, long blocks, int worker, Window window, List<long> latencies)
    {
        var random = new Random(worker * 7919 + 17);
        long next = worker; // sequential loops interleave: loop w reads blocks w, w + depth, ...
        while (true)
        {
            long block = spec.Operation == BlockOperation.SequentialRead ? next % blocks : random.NextInt64(blocks);
            next += spec.QueueDepth;
            long issued = Stopwatch.GetTimestamp();
            if (window.Over(issued)) return;
            if (spec.Operation == BlockOperation.RandomWrite) await client.WriteAsync(block * spec.BlockSize, buffer).ConfigureAwait(false);
            else await client.ReadAsync(block * spec.BlockSize, buffer).ConfigureAwait(false);
            long done = Stopwatch.GetTimestamp();
            if (issued >= window.MeasureFrom)
            {
                latencies.Add(done - issued);
                window.Count(done);
            }
        }
    }

    /// <summary>Writes the first <paramref name="bytes"/> of the disk once with 1 MiB requests, so reads hit real pages.</summary>
    public static void Fill(BlockClient client, SharedBuffer buffer, long bytes)
    {
        var rng = new Random(1);
        rng.NextBytes(buffer.Span);
        int chunk = buffer.Length;
        for (long offset = 0; offset + chunk <= Math.Min(bytes, client.Capacity); offset += chunk)
            client.WriteAsync(offset, buffer).GetAwaiter().GetResult();
    }

    private static long Ticks(TimeSpan t) => (long)(t.TotalSeconds * Stopwatch.Frequency);
}
