using System.Diagnostics;
using System.Runtime.InteropServices;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using BlockOp = SharpVhost.Devices.Block.BlockOperation;

namespace SharpVhost.Bench;

/// <summary>
/// A storage engine driven directly (no vhost-user, no guest ring) at a fixed depth, on a thread pinned
/// to the backend CPU: what the engine alone can do on the image, beside fio's limit.
/// </summary>
public static unsafe class EngineLoad
{
    public static double Run(string image, StorageEngineKind kind, BlockOperation op, int depth, long spanBytes, TimeSpan warmup, TimeSpan duration, int cpu)
    {
        double iops = 0;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try { iops = RunPinned(image, kind, op, depth, spanBytes, warmup, duration, cpu); }
            catch (Exception e) { failure = e; }
        }) { Name = "engine-load" };
        thread.Start();
        thread.Join();
        if (failure is not null) throw new IOException($"engine load: {failure.Message}", failure);
        return iops;
    }

    private static double RunPinned(string image, StorageEngineKind kind, BlockOperation op, int depth, long spanBytes, TimeSpan warmup, TimeSpan duration, int cpu)
    {
        ThreadAffinity.PinCurrentThread(cpu);
        const int block = 4096;
        using var storage = new FileStorage(image, readOnly: false, direct: true, kind);
        using var engine = storage.CreateQueueEngine(depth);
        byte* buffers = (byte*)NativeMemory.AlignedAlloc((nuint)(depth * block), 4096);
        try
        {
            new Span<byte>(buffers, depth * block).Fill(0x5A);
            var rng = new Random(32);
            long blocks = spanBytes / block;
            var kindOp = op == BlockOperation.RandomWrite ? BlockOperationKind.Write : BlockOperationKind.Read;
            var segment = new IoSegment[1]; // one array reused: the engine copies the segment list in Enqueue
            void Issue(int slot)
            {
                segment[0] = new IoSegment((nint)(buffers + slot * block), block);
                if (!engine.Enqueue(new BlockOp(kindOp, rng.NextInt64(blocks) * block, block, segment, (ulong)slot))) throw new InvalidOperationException("engine refused within its depth");
            }
            for (int i = 0; i < depth; i++) Issue(i);
            engine.Submit();
            Span<BlockCompletion> done = stackalloc BlockCompletion[depth];
            long start = Stopwatch.GetTimestamp(), measureFrom = start + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
            long end = measureFrom + (long)(duration.TotalSeconds * Stopwatch.Frequency), counted = 0;
            while (true)
            {
                int n = engine.Reap(done);
                if (n == 0) { EventFd.WaitAny([engine.CompletionFd], 1000); continue; }
                long now = Stopwatch.GetTimestamp();
                for (int i = 0; i < n; i++)
                {
                    if (!done[i].Succeeded) throw new IOException($"engine I/O failed: errno {-done[i].Result}");
                    if (now >= measureFrom) counted++;
                }
                if (now >= end) break;
                for (int i = 0; i < n; i++) Issue((int)done[i].Token);
                engine.Submit();
            }
            while (engine.InFlight > 0) { if (engine.Reap(done) == 0) EventFd.WaitAny([engine.CompletionFd], 1000); }
            return counted / duration.TotalSeconds;
        }
        finally
        {
            NativeMemory.AlignedFree(buffers);
        }
    }
}
