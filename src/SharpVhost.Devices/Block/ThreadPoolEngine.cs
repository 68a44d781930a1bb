using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>
/// The engine for where io_uring is unavailable (kernel.io_uring_disabled, a seccomp filter), like
/// qemu-storage-daemon's aio=threads: the queue's operations run as blocking preadv / pwritev2 /
/// fdatasync / fallocate calls on a few worker threads of this engine's own, grown on demand up to
/// <see cref="MaxWorkers"/>, and each completion signals <see cref="CompletionFd"/>.
/// </summary>
public sealed class ThreadPoolEngine : IBlockQueueEngine
{
    public const int MaxWorkers = 64; // as QEMU's thread pool

    private readonly FileOperationSlots _slots;
    private readonly int _bufferedFd, _directFd;
    private readonly EventFd _completions = EventFd.Create(nonBlocking: true);
    private readonly object _lock = new();
    private readonly int[] _work, _done; // rings of slot indices, each at most Depth long
    private int _workHead, _workCount, _doneHead, _doneCount;
    private readonly int[] _submitted; // enqueued since the last Submit
    private int _submittedCount;
    private readonly List<Thread> _threads = [];
    private int _idle;
    private bool _stopping;

    public int CompletionFd => _completions.Fd;
    public int Depth => _slots.Depth;
    public int MaxSegments => _slots.MaxSegments;
    public int InFlight => _slots.InFlight;
    /// <summary>Worker threads started so far.</summary>
    public int Workers { get { lock (_lock) return _threads.Count; } }

    /// <summary>An engine over <paramref name="bufferedFd"/> and (if not -1) <paramref name="directFd"/>, kept open by the caller.</summary>
    public ThreadPoolEngine(int depth, int bufferedFd, int directFd)
    {
        _slots = new FileOperationSlots(depth);
        _bufferedFd = bufferedFd;
        _directFd = directFd;
        _work = new int[depth];
        _done = new int[depth];
        _submitted = new int[depth];
    }

    public bool Enqueue(in BlockOperation operation)
    {
        int index = _slots.Take(operation, _directFd >= 0, out bool refused);
        if (index < 0) return false;
        if (refused) _completions.Signal();
        else _submitted[_submittedCount++] = index;
        return true;
    }

    public void Submit()
    {
        if (_submittedCount == 0) return;
        lock (_lock)
        {
            for (int i = 0; i < _submittedCount; i++) _work[(_workHead + _workCount++) % _work.Length] = _submitted[i];
            int wanted = Math.Min(_workCount - _idle, Math.Min(Depth, MaxWorkers) - _threads.Count);
            for (int i = 0; i < wanted; i++)
            {
                var thread = new Thread(Work) { IsBackground = true, Name = "blk-aio" };
                _threads.Add(thread);
                thread.Start();
            }
            // One waiter per operation: waking every idle worker for each would have them fight over the lock.
            for (int i = 0; i < _submittedCount; i++) Monitor.Pulse(_lock);
        }
        _submittedCount = 0;
    }

    private void Work()
    {
        while (true)
        {
            int index;
            lock (_lock)
            {
                _idle++;
                while (_workCount == 0 && !_stopping) Monitor.Wait(_lock);
                _idle--;
                if (_workCount == 0) return;
                index = _work[_workHead];
                _workHead = (_workHead + 1) % _work.Length;
                _workCount--;
            }
            // The slot is this worker's until it is put on the done ring (the lock orders the handoffs).
            ref var s = ref _slots.Slots[index];
            s.Result = s.Cancelled ? -FileIo.ECANCELED : Execute(ref s);
            lock (_lock) _done[(_doneHead + _doneCount++) % _done.Length] = index;
            _completions.Signal();
        }
    }

    private int Execute(ref FileOperationSlots.Slot s)
    {
        switch (s.Kind)
        {
            case BlockOperationKind.Read or BlockOperationKind.Write:
                while (true)
                {
                    int fd = s.Direct ? _directFd : _bufferedFd;
                    long n = s.Kind == BlockOperationKind.Read
                        ? FileIo.Preadv(fd, _slots.Vectors.AddressOf(s.First), s.Count, s.Offset)
                        : FileIo.Pwritev(fd, _slots.Vectors.AddressOf(s.First), s.Count, s.Offset, s.Fua);
                    if (n == -FileIo.EINTR) continue;
                    if (n == -FileIo.EINVAL && s.Direct && s.Done == 0) { s.Direct = false; continue; }
                    if (n < 0) return (int)n;
                    if (n == 0) return -FileIo.EIO; // end of file inside the request
                    if (AdvanceSlot(ref s, n)) return (int)s.Length;
                }
            case BlockOperationKind.Flush:
                return FileIo.Fdatasync(_bufferedFd);
            case BlockOperationKind.Discard or BlockOperationKind.WriteZeroesUnmap:
                return FileIo.Fallocate(_bufferedFd, IoUring.FallocPunchHole, s.Offset, s.Length);
            case BlockOperationKind.WriteZeroes:
                int r = FileIo.Fallocate(_bufferedFd, IoUring.FallocZeroRange, s.Offset, s.Length);
                if (r != -FileIo.EOPNOTSUPP) return r;
                r = FileIo.Fallocate(_bufferedFd, IoUring.FallocPunchHole, s.Offset, s.Length);
                return r < 0 ? r : FileIo.Fallocate(_bufferedFd, 1 /* KEEP_SIZE: allocate again */, s.Offset, s.Length);
            default:
                return -FileIo.EINVAL;
        }
    }

    private bool AdvanceSlot(ref FileOperationSlots.Slot s, long moved)
    {
        s.Done += moved;
        if (s.Done >= s.Length) return true;
        int end = s.First + s.Count;
        s.First = _slots.Vectors.Advance(s.First, s.Count, moved);
        s.Count = end - s.First;
        s.Offset += moved;
        return false;
    }

    public int Reap(Span<BlockCompletion> into)
    {
        _completions.TryConsume();
        int n = _slots.TakeReady(into);
        lock (_lock)
        {
            while (n < into.Length && _doneCount > 0)
            {
                int index = _done[_doneHead];
                _doneHead = (_doneHead + 1) % _done.Length;
                _doneCount--;
                _slots.Complete(index, _slots.Slots[index].Result);
                n += _slots.TakeReady(into[n..]);
            }
            if (_doneCount > 0 || _slots.HasReady) _completions.Signal();
        }
        return n;
    }

    /// <summary>An operation not yet picked up by a worker completes with -ECANCELED; one running completes with its result.</summary>
    public void Cancel(ulong token)
    {
        int index = _slots.Find(token);
        if (index < 0) return;
        lock (_lock) _slots.Slots[index].Cancelled = true;
    }

    /// <summary>Cancels what waits, lets what runs finish (a blocking call cannot be stopped), then frees the iovecs.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _submittedCount; i++) _slots.Slots[_submitted[i]].Cancelled = true;
        Submit();
        lock (_lock)
        {
            for (int i = 0; i < _workCount; i++) _slots.Slots[_work[(_workHead + i) % _work.Length]].Cancelled = true;
            _stopping = true;
            Monitor.PulseAll(_lock);
        }
        foreach (var thread in _threads) thread.Join();
        _completions.Dispose();
        _slots.Dispose();
    }
}
