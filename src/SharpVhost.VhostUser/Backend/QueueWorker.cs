using System.Diagnostics;
using Microsoft.Extensions.Logging;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// One thread per started queue: polls the ring for a short adaptive window once it runs dry, then
/// sleeps on the kick eventfd (or busy-polls throughout), and processes the ring in batches, each
/// batch (and each look at the ring while polling) inside its own memory read section so that
/// invalidations never wait longer than one batch. Stopping (GET_VRING_BASE, disconnect) joins the thread.
/// </summary>
public sealed class QueueWorker : IDisposable
{
    private const int BatchBudget = 64;
    private readonly IDeviceQueue _queue;
    private readonly GuestMemoryDomain _domain;
    private readonly IQueueProcessor _processor;
    private readonly EventFd? _kick;
    private EventFd? _call, _err;
    private readonly EventFd _stop = EventFd.Create(nonBlocking: true);
    // Signalled by the control path when a memory change has waited too long for our in-flight requests.
    private readonly EventFd _cancel = EventFd.Create(nonBlocking: true);
    private long _cancelHandled;
    private volatile bool _abandoned;
    private readonly ILogger _log;
    private readonly Thread _thread;
    private volatile bool _stopping;
    private readonly Func<IotlbMiss, bool>? _reportMiss;
    private volatile bool _finishOnStop;

    public bool BusyPoll { get; }
    private readonly AdaptivePoll _poll;

    /// <param name="reportMiss">Sends an IOTLB miss to the frontend (ACCESS_PLATFORM), false if there is no way to;
    /// called outside any read section.</param>
    public QueueWorker(IDeviceQueue queue, GuestMemoryDomain domain, IQueueProcessor processor,
        EventFd? kick, EventFd? call, EventFd? err, bool busyPoll, TimeSpan pollMax, ILogger log, Func<IotlbMiss, bool>? reportMiss = null)
    {
        _poll = new AdaptivePoll(pollMax);
        _reportMiss = reportMiss;
        _queue = queue;
        _domain = domain;
        _processor = processor;
        _kick = kick;
        _call = call;
        _err = err;
        _log = log;
        BusyPoll = busyPoll || kick is null;
        _thread = new Thread(Run) { IsBackground = true, Name = $"vq{queue.Index}" };
    }

    public void Start() => _thread.Start();

    /// <summary>
    /// Replaces the call (interrupt) eventfd while running. The worker signals only inside a memory
    /// read section, so the caller retires the old descriptor after a grace period
    /// (<see cref="GuestMemoryDomain.Invalidate"/>), never while a signal to it may be in progress.
    /// </summary>
    public EventFd? ExchangeCall(EventFd? call) => Interlocked.Exchange(ref _call, call);

    /// <summary>
    /// Replaces the error eventfd. The worker signals it only under <see cref="_errLock"/>, outside any
    /// read section, so once this returns the old descriptor is no longer in use and may be closed.
    /// </summary>
    public EventFd? ExchangeErr(EventFd? err)
    {
        lock (_errLock)
        {
            var old = _err;
            _err = err;
            return old;
        }
    }

    private readonly Lock _errLock = new();

    // A pass disabled kicks and nothing has re-enabled them yet: polling is fine, sleeping is not.
    private bool _kicksOff;

    /// <summary>
    /// After a pass that emptied the ring, the worker polls it for the adaptive window before it sleeps.
    /// Kicks stay disabled while it polls, as QEMU's and DPDK's polling devices keep them: a driver
    /// that finds them enabled pays an eventfd write for every batch it adds, and a frontend polling
    /// its own side (DPDK's virtio_user) spends its time in those system calls.
    /// </summary>
    private bool PollsNext => _poll.WindowTicks > 0 && !_processor.IdleUntilWake;

    private void Run()
    {
        using var reader = _domain.RegisterReader();
        reader.CancelRequested = _cancel.Signal;
        int wakeFd = _processor.WakeFd;
        Span<int> fds = stackalloc int[wakeFd >= 0 ? 4 : 3];
        try
        {
            // Work may have been queued before we started (reconnect, or a kick we did not see).
            Drain(reader);
            int resubmitted = _queue.Resubmitted;
            if (resubmitted > 0)
                _log.LogInformation("queue {Queue}: resubmitted {Count} request(s) left in flight by a previous backend", _queue.Index, resubmitted);
            while (!_stopping && !_queue.IsBroken)
            {
                // Busy polling spins, except for a receive queue with nothing to deliver: spinning on the
                // guest's posted buffers would take the CPU from the port's transmit worker (a sink's
                // ring); it sleeps until its endpoint has frames, as without busy polling.
                HandleCancel(reader);
                if (BusyPoll && (_kick is null || !_processor.IdleUntilWake))
                {
                    if (!Drain(reader)) Thread.SpinWait(50);
                    continue;
                }
                // A receive queue idle until its endpoint has frames is woken by its wake fd, not the ring.
                if (PollsNext && PollRing(reader, _poll.WindowTicks))
                {
                    Drain(reader);
                    continue;
                }
                if (_kicksOff && EnableKicksAndRecheck(reader))
                {
                    Drain(reader); // a chain arrived while kicks were off: it may never be kicked for
                    continue;
                }
                fds[0] = _kick!.Fd; fds[1] = _stop.Fd; fds[2] = _cancel.Fd;
                if (wakeFd >= 0) fds[3] = wakeFd;
                long asleep = Stopwatch.GetTimestamp();
                int ready = EventFd.WaitAny(fds, -1);
                if (_stopping || ready == 1) break;
                if (ready == 0)
                {
                    _poll.Slept(Stopwatch.GetTimestamp() - asleep);
                    if (_kick.TryConsume()) _queue.Counters.Kicks++;
                }
                Drain(reader);
            }
            if (_finishOnStop && !_queue.IsBroken) Finish(reader);
        }
        catch (Exception e)
        {
            _queue.MarkBroken($"worker failed: {e.Message}");
            _log.LogError(e, "queue {Queue} worker failed", _queue.Index);
        }
        try
        {
            DrainInFlight(reader);
        }
        catch (Exception e)
        {
            _queue.MarkBroken($"worker failed while completing its requests: {e.Message}");
            _log.LogError(e, "queue {Queue} worker failed while completing its requests", _queue.Index);
            if (_processor.InFlight > 0) Abandon(reader);
        }
        if (_queue.IsBroken)
        {
            _log.LogWarning("queue {Queue} stopped: {Reason}", _queue.Index, _queue.BrokenReason);
            SignalErr();
        }
    }

    /// <summary>
    /// Tells the frontend the queue broke. The error "eventfd" is whatever fd the frontend sent (a
    /// read-only file, a socket whose peer is gone): if it cannot be written we log and go on. This
    /// runs outside the worker's try, on a thread nobody catches for, so an exception here would end
    /// the whole process.
    /// </summary>
    private void SignalErr()
    {
        lock (_errLock)
        {
            try
            {
                _err?.Signal();
            }
            catch (IOException e)
            {
                _log.LogWarning("queue {Queue}: could not signal the error eventfd: {Reason}", _queue.Index, e.Message);
            }
        }
    }

    /// <summary>
    /// Processes until there is nothing to do with kicks re-enabled. Returns whether anything was done.
    /// A pass that used its whole budget goes round again at once (kicks stay off: the ring is not
    /// known to be empty). A shorter pass re-enables kicks and re-checks the ring, so that a chain
    /// made available meanwhile is not stranded behind a kick the driver saw no reason to send;
    /// chains found by the re-check are work, unless the processor said it is idle until its own
    /// wake descriptor fires (a receive queue with buffers but no frames: sleeping then is right, and
    /// spinning on the buffers would burn a core).
    /// </summary>
    private bool Drain(MemoryReader reader)
    {
        bool any = false;
        while (!_stopping)
        {
            var memory = reader.Enter();
            int handled = 0;
            bool more;
            IotlbMiss? miss;
            try
            {
                if (_queue.Attach(memory))
                {
                    _queue.DisableKicks();
                    _kicksOff = true;
                    handled = _processor.Process(_queue, memory, BatchBudget);
                    _queue.FlushUsed();
                    if (_queue.ShouldInterrupt()) Volatile.Read(ref _call)?.Signal();
                }
                reader.SetPin(_processor.PinnedGeneration); // before the section ends: what is in flight stays covered
                miss = _queue.PendingMiss;
                if (miss is not null || _queue.IsBroken) more = false; // a miss: the ring is not empty, we wait for a translation
                else if (handled >= BatchBudget) more = true; // (a receive pass may take a few buffers past its budget)
                else if (BusyPoll || PollsNext) more = false; // kicks stay off; the caller enables them before any sleep
                else
                {
                    bool available = _queue.EnableKicks();
                    _kicksOff = false;
                    more = available && !_processor.IdleUntilWake;
                }
            }
            finally
            {
                reader.Exit();
            }
            any |= handled > 0;
            if (_queue.IsBroken) return any;
            if (miss is { } m)
            {
                WaitForTranslation(reader, m, memory.Generation);
                continue;
            }
            _missAsked = null; // no longer stuck: the next miss, even at the same address, is a new one
            if (!more) return any;
        }
        return any;
    }

    /// <summary>
    /// Looks at the ring until the driver makes a chain available or the window closes, with kicks
    /// still disabled (<see cref="PollsNext"/>). True if there is work for Drain, including a ring that
    /// cannot be attached now (a memory change or a miss is Drain's to handle).
    /// </summary>
    private bool PollRing(MemoryReader reader, long windowTicks)
    {
        long deadline = Stopwatch.GetTimestamp() + windowTicks;
        do
        {
            var memory = reader.Enter();
            try
            {
                if (!_queue.Attach(memory) || _queue.HasAvailable()) return true;
            }
            finally
            {
                reader.Exit();
            }
            Thread.SpinWait(20);
        }
        while (!_stopping && Stopwatch.GetTimestamp() < deadline);
        return false;
    }

    /// <summary>
    /// Enables kicks before the worker sleeps and re-checks the ring: true if a chain arrived meanwhile
    /// (the driver may have seen kicks off and sent none), or if the ring cannot be attached now (a
    /// memory change or a miss is Drain's to handle).
    /// </summary>
    private bool EnableKicksAndRecheck(MemoryReader reader)
    {
        var memory = reader.Enter();
        try
        {
            if (!_queue.Attach(memory)) return true;
            bool available = _queue.EnableKicks();
            _kicksOff = false;
            return available && !_processor.IdleUntilWake;
        }
        finally
        {
            reader.Exit();
        }
    }

    // The miss the queue is stuck on that the frontend was last asked about, and when (Environment.TickCount64).
    private IotlbMiss? _missAsked;
    private long _missAskedAt;

    /// <summary>
    /// Asks the frontend for the translation the queue missed and waits, outside any read section (an
    /// invalidation must never wait for us), until the memory view changes; asks again after a second
    /// in case the frontend dropped the request. Stopping ends the wait.
    /// </summary>
    /// <remarks>
    /// The wait ends at any memory change, mostly other addresses' updates and invalidations, and the
    /// queue then stops at the same miss again: that is not asked again until a second has passed. Asking
    /// at every change sent duplicates that QEMU answered only after the guest had completed the request
    /// and unmapped the address, so its vIOMMU reported DMAR faults to the guest for a well-behaved device.
    /// </remarks>
    private void WaitForTranslation(MemoryReader reader, IotlbMiss miss, long generation)
    {
        while (!_stopping)
        {
            long now = Environment.TickCount64;
            if (_missAsked != miss || now - _missAskedAt >= 1000) // first, and then once a second
            {
                _missAsked = miss;
                _missAskedAt = now;
                _queue.Counters.IotlbMisses++;
                if (_reportMiss?.Invoke(miss) != true)
                {
                    _queue.MarkBroken($"IOTLB miss at iova {miss.Iova:x} and no back-end request channel to ask for it (none given, or the frontend stopped reading it)");
                    return;
                }
            }
            if (_processor.InFlight > 0)
            {
                // Requests started before the miss still complete meanwhile: publish them (a memory change
                // that waits for them would otherwise wait for the translation too).
                HandleCancel(reader);
                CompletionPass(reader, release: false);
                if (_domain.WaitForChange(generation, 1)) return;
                continue;
            }
            if (_domain.WaitForChange(generation, 20)) return;
        }
    }

    /// <summary>A memory change waited its bound for our pin: cancel what it waits for (on this thread, the engine's).</summary>
    private void HandleCancel(MemoryReader reader)
    {
        long below = reader.CancelRequestedBelow;
        if (below <= _cancelHandled) return;
        _cancel.TryConsume();
        _cancelHandled = below;
        if (_processor.InFlight == 0) return;
        _log.LogWarning("queue {Queue}: a memory change waited too long for {Count} request(s) in flight; cancelling them", _queue.Index, _processor.InFlight);
        _processor.CancelInFlight(below);
    }

    /// <summary>
    /// One section that publishes completed requests without popping new ones. With <paramref name="release"/>,
    /// completions the ring cannot take (broken, or unreachable now) are released unanswered; without, they wait.
    /// </summary>
    private void CompletionPass(MemoryReader reader, bool release)
    {
        var memory = reader.Enter();
        try
        {
            if (_queue.Attach(memory))
            {
                _processor.Complete(_queue);
                _queue.FlushUsed();
                if (_queue.ShouldInterrupt()) Volatile.Read(ref _call)?.Signal();
            }
            else if (release)
            {
                _processor.Complete(null);
            }
            reader.SetPin(_processor.PinnedGeneration);
        }
        finally
        {
            reader.Exit();
        }
    }

    /// <summary>
    /// The worker is stopping (or its queue broke): requests in flight still write into guest memory, so
    /// it waits for them and publishes them (GET_VRING_BASE returns only with none in flight), bounded by
    /// the domain's <see cref="GuestMemoryDomain.InFlightWait"/>; then it cancels them (they complete with
    /// IOERR) and waits <see cref="GuestMemoryDomain.CancelWait"/> more. Requests that outlive both are
    /// abandoned with their memory kept mapped (<see cref="MemoryReader.Abandon"/>): never unmapped under them.
    /// </summary>
    private void DrainInFlight(MemoryReader reader)
    {
        if (_processor.InFlight == 0) return;
        int wakeFd = _processor.WakeFd;
        long deadline = Environment.TickCount64 + (long)_domain.InFlightWait.TotalMilliseconds;
        bool cancelled = false;
        Span<int> fds = stackalloc int[1];
        while (true)
        {
            CompletionPass(reader, release: true);
            if (_processor.InFlight == 0) return;
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
            {
                if (cancelled)
                {
                    Abandon(reader);
                    return;
                }
                _log.LogWarning("queue {Queue}: {Count} request(s) still in flight after {Wait}; cancelling them", _queue.Index, _processor.InFlight, _domain.InFlightWait);
                _processor.CancelInFlight(long.MaxValue);
                cancelled = true;
                deadline = Environment.TickCount64 + (long)_domain.CancelWait.TotalMilliseconds;
                continue;
            }
            if (wakeFd >= 0)
            {
                fds[0] = wakeFd;
                EventFd.WaitAny(fds, (int)Math.Min(left, 100));
            }
            else
            {
                Thread.Sleep(1); // a synchronous engine has nothing in flight past a pass; defensive only
            }
        }
    }

    private void Abandon(MemoryReader reader)
    {
        _log.LogError("queue {Queue}: {Count} request(s) ignored their cancellation; the memory they use stays mapped until they end", _queue.Index, _processor.InFlight);
        _queue.Counters.Errors += _processor.InFlight;
        _abandoned = true;
        reader.Abandon();
    }

    /// <summary>
    /// The last passes of a queue being stopped or disabled whose processor asks for it
    /// (<see cref="IQueueProcessor.FinishOnStop"/>): what the driver made available before the stop is
    /// processed, and no more than one ring's worth, so a driver that keeps adding cannot hold the stop up.
    /// </summary>
    private void Finish(MemoryReader reader)
    {
        int left = Math.Max(_queue.Size, 1);
        while (left > 0)
        {
            int budget = Math.Min(BatchBudget, left);
            var memory = reader.Enter();
            int handled;
            try
            {
                if (!_queue.Attach(memory)) return;
                handled = _processor.Process(_queue, memory, budget);
                _queue.FlushUsed();
                if (_queue.ShouldInterrupt()) Volatile.Read(ref _call)?.Signal();
                reader.SetPin(_processor.PinnedGeneration);
            }
            finally
            {
                reader.Exit();
            }
            left -= handled;
            if (handled < budget || _queue.IsBroken) return;
        }
    }

    /// <summary>
    /// Stops the thread and waits for it: after this returns the worker touches nothing. With
    /// <paramref name="finish"/> (the ring is being stopped or disabled, not torn down) a processor that
    /// asks for it first gets what the driver made available before the stop
    /// (<see cref="IQueueProcessor.FinishOnStop"/>): a net transmit queue's last frames were sent, and
    /// the worker may simply not have been scheduled since their kick.
    /// </summary>
    public void Stop(bool finish = false)
    {
        if (finish && _processor.FinishOnStop) _finishOnStop = true; // before _stopping: the worker reads it after seeing the stop
        _stopping = true;
        _stop.Signal();
        if (_thread.IsAlive && Thread.CurrentThread != _thread) _thread.Join();
    }

    public void Dispose()
    {
        Stop();
        _stop.Dispose();
        if (_abandoned) return; // the engine still has requests writing into memory we keep mapped for them
        _cancel.Dispose();
        (_processor as IDisposable)?.Dispose(); // e.g. a net receive queue stops taking frames; a block queue's engine closes
    }
}
