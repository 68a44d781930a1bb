using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>
/// Emulates a slow disk without sleeping: each operation goes to the inner engine at once, and its
/// completion is held until <c>delay</c> after it was enqueued (or until the inner one completes, if
/// later). A timerfd armed at the earliest deadline and the inner engine's completion fd sit behind one
/// epoll fd, <see cref="CompletionFd"/>, so requests in flight overlap as with qsd's null-aio
/// <c>latency-ns</c>: 32 requests of 1 ms take about 1 ms, not 32.
/// </summary>
public sealed class DelayEngine : IBlockQueueEngine
{
    private struct Slot
    {
        public ulong Token;
        public long DeadlineNs;
        public bool Busy, InnerDone;
        public int Result;
    }

    private readonly IBlockQueueEngine _inner;
    private readonly long _delayNs;
    private readonly Slot[] _slots;
    private readonly int[] _free;
    private int _freeCount;
    private readonly int[] _order; // slots in enqueue order = deadline order (the delay is constant)
    private int _orderHead, _orderCount;
    private readonly TimerFd _timer = new();
    private readonly EpollSet _epoll = new();
    private readonly BlockCompletion[] _innerBatch;
    private long _armedAt;

    public int CompletionFd => _epoll.Fd;
    public int Depth => _slots.Length;
    public int MaxSegments => _inner.MaxSegments;
    public int InFlight => _slots.Length - _freeCount;
    public TimeSpan Delay { get; }

    /// <summary>Takes ownership of <paramref name="inner"/>.</summary>
    public DelayEngine(IBlockQueueEngine inner, TimeSpan delay)
    {
        _inner = inner;
        Delay = delay;
        _delayNs = delay.Ticks * 100;
        int depth = inner.Depth;
        _slots = new Slot[depth];
        _free = new int[depth];
        for (int i = 0; i < depth; i++) _free[i] = depth - 1 - i;
        _freeCount = depth;
        _order = new int[depth];
        _innerBatch = new BlockCompletion[depth];
        _epoll.Add(_timer.Fd);
        if (inner.CompletionFd >= 0) _epoll.Add(inner.CompletionFd);
    }

    public bool Enqueue(in BlockOperation operation)
    {
        if (_freeCount == 0) return false;
        int index = _free[_freeCount - 1];
        var forwarded = new BlockOperation(operation.Kind, operation.Offset, operation.Length, operation.Segments, (ulong)index, operation.Fua);
        if (!_inner.Enqueue(forwarded)) return false;
        _freeCount--;
        _slots[index] = new Slot { Token = operation.Token, DeadlineNs = TimerFd.NowNs() + _delayNs, Busy = true };
        _order[(_orderHead + _orderCount++) % _order.Length] = index;
        if (_orderCount == 1) Arm(_slots[index].DeadlineNs);
        return true;
    }

    public void Submit() => _inner.Submit();

    private void Arm(long deadlineNs)
    {
        if (_armedAt == deadlineNs) return;
        _armedAt = deadlineNs;
        _timer.ArmAt(deadlineNs);
    }

    public int Reap(Span<BlockCompletion> into)
    {
        // Collect what the inner engine finished; it is held until its deadline.
        int got;
        while ((got = _inner.Reap(_innerBatch)) > 0)
        {
            for (int i = 0; i < got; i++)
            {
                ref var s = ref _slots[(int)_innerBatch[i].Token];
                s.InnerDone = true;
                s.Result = _innerBatch[i].Result;
            }
        }
        _timer.Consume();
        long now = TimerFd.NowNs();
        int n = 0;
        // Release in deadline order; one whose inner operation is still running keeps its place, and
        // later ones that are done may pass it.
        for (int k = 0; k < _orderCount && n < into.Length; k++)
        {
            int index = _order[(_orderHead + k) % _order.Length];
            if (index < 0) continue;
            ref var s = ref _slots[index];
            if (s.DeadlineNs > now) break;
            if (!s.InnerDone) continue;
            into[n++] = new BlockCompletion(s.Token, s.Result);
            s.Busy = false;
            _free[_freeCount++] = index;
            _order[(_orderHead + k) % _order.Length] = -1;
        }
        while (_orderCount > 0 && _order[_orderHead] < 0)
        {
            _orderHead = (_orderHead + 1) % _order.Length;
            _orderCount--;
        }
        // The next wake-up: the earliest deadline still held whose inner operation is done (or any, as a floor).
        long next = 0;
        for (int k = 0; k < _orderCount; k++)
        {
            int index = _order[(_orderHead + k) % _order.Length];
            if (index < 0 || !_slots[index].InnerDone) continue;
            next = _slots[index].DeadlineNs;
            break;
        }
        if (next != 0) { _armedAt = 0; Arm(Math.Max(next, 1)); }
        else if (_orderCount > 0) { _armedAt = 0; Arm(_slots[_order[_orderHead]].DeadlineNs); }
        return n;
    }

    public void Cancel(ulong token)
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (!_slots[i].Busy || _slots[i].Token != token) continue;
            _slots[i].DeadlineNs = 0; // no more waiting: it completes as soon as the inner operation does
            _inner.Cancel((ulong)i);
            _timer.ArmAt(1);
            _armedAt = 1;
            return;
        }
    }

    public void Dispose()
    {
        _inner.Dispose();
        _epoll.Dispose();
        _timer.Dispose();
    }
}
