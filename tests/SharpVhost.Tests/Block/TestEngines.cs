using System.Collections.Concurrent;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;

namespace SharpVhost.Tests.Block;

/// <summary>One operation a test engine holds until it is told (or its timer says) to complete it.</summary>
internal sealed record HeldOperation(BlockOperationKind Kind, long Offset, long Length, IoSegment[] Segments, ulong Token);

/// <summary>
/// Storage over a RAM disk whose per-queue engine is made by the test: the engines below complete
/// late (the data moves at completion, not at enqueue) and in whatever order the test chooses.
/// </summary>
internal sealed class EngineStorage(long capacity, Func<RamStorage, int, IBlockQueueEngine> engine) : IBlockStorage
{
    public RamStorage Ram { get; } = new(capacity);
    public List<IBlockQueueEngine> Engines { get; } = [];
    public long Capacity => capacity;
    public bool ReadOnly => false;
    public bool SupportsDiscard => true;
    public string Description => "test engine storage";
    public void Read(Span<byte> destination, long offset) => Ram.Read(destination, offset);
    public void Write(ReadOnlySpan<byte> source, long offset) => Ram.Write(source, offset);
    public void Flush() { }
    public void Discard(long offset, long length) => Ram.Discard(offset, length);
    public void WriteZeroes(long offset, long length, bool unmap) => Ram.WriteZeroes(offset, length, unmap);

    public IBlockQueueEngine CreateQueueEngine(int depth)
    {
        var e = engine(Ram, depth);
        lock (Engines) Engines.Add(e);
        return e;
    }

    public void Dispose() => Ram.Dispose();

    /// <summary>Moves an operation's data between the RAM disk and guest memory; returns its result.</summary>
    public static int Execute(RamStorage ram, HeldOperation op)
    {
        long offset = op.Offset;
        switch (op.Kind)
        {
            case BlockOperationKind.Read:
                foreach (var s in op.Segments) { ram.Read(HostMemory.AsSpan(s.Address, s.Length), offset); offset += s.Length; }
                return (int)op.Length;
            case BlockOperationKind.Write:
                foreach (var s in op.Segments) { ram.Write(HostMemory.AsSpan(s.Address, s.Length), offset); offset += s.Length; }
                return (int)op.Length;
            case BlockOperationKind.Discard:
            case BlockOperationKind.WriteZeroes:
            case BlockOperationKind.WriteZeroesUnmap:
                ram.WriteZeroes(op.Offset, op.Length, true);
                return 0;
            default:
                return 0;
        }
    }
}

/// <summary>
/// An engine the test drives by hand: operations wait until <see cref="Complete"/> names them, in any
/// order; a completion eventfd as a real engine has. Failures and cancellations can be injected.
/// </summary>
internal sealed class ManualEngine(RamStorage ram, int depth, int maxSegments = 1024) : IBlockQueueEngine
{
    private readonly EventFd _fd = EventFd.Create(nonBlocking: true);
    private readonly List<HeldOperation> _held = [];
    private readonly Queue<BlockCompletion> _done = new();

    public int CompletionFd => _fd.Fd;
    public int Depth => depth;
    public int MaxSegments => maxSegments;
    public int InFlight => _held.Count + _done.Count;
    public IReadOnlyList<HeldOperation> Held => _held;
    public List<ulong> Cancelled { get; } = [];
    public int Submits { get; private set; }
    /// <summary>When set, a cancelled operation completes at once with -ECANCELED (io_uring's behaviour); else it is ignored.</summary>
    public bool HonourCancel { get; set; } = true;

    public bool Enqueue(in BlockOperation operation)
    {
        if (InFlight >= depth) return false;
        _held.Add(new HeldOperation(operation.Kind, operation.Offset, operation.Length, operation.Segments.ToArray(), operation.Token));
        return true;
    }

    public void Submit() => Submits++;

    /// <summary>Completes the held operation at <paramref name="index"/> (in enqueue order among those still held), moving its data now.</summary>
    public void Complete(int index, int? result = null)
    {
        var op = _held[index];
        _held.RemoveAt(index);
        _done.Enqueue(new BlockCompletion(op.Token, result ?? EngineStorage.Execute(ram, op)));
        _fd.Signal();
    }

    public int Reap(Span<BlockCompletion> into)
    {
        int n = 0;
        while (n < into.Length && _done.TryDequeue(out var c)) into[n++] = c;
        if (_done.Count == 0) _fd.TryConsume();
        return n;
    }

    public void Cancel(ulong token)
    {
        Cancelled.Add(token);
        if (!HonourCancel) return;
        int i = _held.FindIndex(h => h.Token == token);
        if (i >= 0) Complete(i, -125);
    }

    public void Dispose() => _fd.Dispose();
}

/// <summary>
/// A slow disk whose requests overlap: each operation completes <c>delay</c> after it was submitted, on
/// a timer thread that moves the data into (or out of) guest memory then, as a kernel doing DMA would.
/// Records when its last operation touched guest memory, for tests that check nothing does after an unmap.
/// </summary>
internal sealed class DelayedEngine(RamStorage ram, int depth, TimeSpan delay) : IBlockQueueEngine
{
    private readonly EventFd _fd = EventFd.Create(nonBlocking: true);
    private readonly ConcurrentQueue<BlockCompletion> _done = new();
    private readonly List<HeldOperation> _pending = [];
    private readonly ConcurrentDictionary<ulong, Timer> _timers = new();
    private int _inFlight;

    private long _touches;
    /// <summary>Operations that have moved their data (into or out of guest memory).</summary>
    public long Touches => Interlocked.Read(ref _touches);
    /// <summary>False: <see cref="Cancel"/> is ignored, as a thread blocked in a system call would ignore it.</summary>
    public bool HonourCancel { get; set; } = true;
    public int CompletionFd => _fd.Fd;
    public int Depth => depth;
    public int MaxSegments => 1024;
    public int InFlight => Volatile.Read(ref _inFlight);

    public bool Enqueue(in BlockOperation operation)
    {
        if (InFlight >= depth) return false;
        Interlocked.Increment(ref _inFlight);
        _pending.Add(new HeldOperation(operation.Kind, operation.Offset, operation.Length, operation.Segments.ToArray(), operation.Token));
        return true;
    }

    public void Submit()
    {
        foreach (var op in _pending)
        {
            var timer = new Timer(_ =>
            {
                if (!_timers.TryRemove(op.Token, out var t)) return; // cancelled meanwhile
                t.Dispose();
                int result = EngineStorage.Execute(ram, op);
                Interlocked.Increment(ref _touches);
                _done.Enqueue(new BlockCompletion(op.Token, result));
                _fd.Signal();
            });
            _timers[op.Token] = timer;
            timer.Change(delay, Timeout.InfiniteTimeSpan);
        }
        _pending.Clear();
    }

    public int Reap(Span<BlockCompletion> into)
    {
        int n = 0;
        while (n < into.Length && _done.TryDequeue(out var c)) into[n++] = c;
        Interlocked.Add(ref _inFlight, -n);
        if (_done.IsEmpty) _fd.TryConsume();
        if (!_done.IsEmpty) _fd.Signal();
        return n;
    }

    public void Cancel(ulong token)
    {
        if (!HonourCancel || !_timers.TryRemove(token, out var t)) return;
        t.Dispose();
        _done.Enqueue(new BlockCompletion(token, -125));
        _fd.Signal();
    }

    public void Dispose()
    {
        foreach (var t in _timers.Values) t.Dispose();
        _fd.Dispose();
    }
}
