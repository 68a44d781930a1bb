namespace SharpVhost.Memory;

/// <summary>
/// One worker's slot in the grace-period protocol. A worker enters a section before it touches guest
/// memory and leaves it when done with the batch; while inside, the snapshot it was handed (and every
/// pointer derived from it) stays mapped. Not reentrant; one thread per reader.
/// Beyond its sections, a worker with requests in flight (asynchronous I/O into guest buffers) holds a
/// pin: the oldest generation those requests were started under. A change that retires memory waits
/// for pins older than itself too, bounded, asking the worker to cancel past the bound
/// (<see cref="GuestMemoryDomain.InFlightWait"/>; docs/invalidation.md).
/// </summary>
public sealed class MemoryReader : IDisposable
{
    internal const long Outside = 0;
    private readonly GuestMemoryDomain _domain;
    private long _activeGeneration = Outside;
    private long _pinnedGeneration = Outside;
    private long _cancelBelow;

    internal MemoryReader(GuestMemoryDomain domain) => _domain = domain;

    internal long ActiveGeneration => Volatile.Read(ref _activeGeneration);

    /// <summary>The oldest generation in-flight requests of this worker hold, or 0 for none.</summary>
    public long PinnedGeneration => Volatile.Read(ref _pinnedGeneration);

    public bool IsInside => ActiveGeneration != Outside;

    /// <summary>
    /// Set when the worker gave up waiting for requests that ignored their cancellation (its thread is
    /// gone, the requests are not): the memory it pins is never waited for again, only kept mapped.
    /// </summary>
    internal bool Abandoned { get; private set; }

    /// <summary>
    /// Called (on the control thread) when a change has waited its bound for this worker's pin: the worker
    /// is to cancel its requests older than <see cref="CancelRequestedBelow"/>. It must only wake the worker.
    /// </summary>
    public Action? CancelRequested { get; set; }

    /// <summary>Requests started under a generation below this are to be cancelled (0: none asked).</summary>
    public long CancelRequestedBelow => Volatile.Read(ref _cancelBelow);

    internal void RequestCancel(long below)
    {
        long seen;
        do
        {
            seen = Volatile.Read(ref _cancelBelow);
            if (seen >= below) break;
        }
        while (Interlocked.CompareExchange(ref _cancelBelow, below, seen) != seen);
        CancelRequested?.Invoke();
    }

    /// <summary>
    /// Announces the generation we are about to use, then checks it is still current. If a change
    /// was published in between we retry, so the control path's wait can never miss us.
    /// </summary>
    public GuestMemory Enter()
    {
        if (IsInside) throw new InvalidOperationException("memory read sections do not nest");
        while (true)
        {
            var snapshot = _domain.Current;
            // Generation 0 (the empty snapshot) still has to be visible as "inside": use -1 for it.
            Interlocked.Exchange(ref _activeGeneration, snapshot.Generation == 0 ? -1 : snapshot.Generation);
            if (ReferenceEquals(_domain.Current, snapshot)) return snapshot;
        }
    }

    /// <summary>
    /// Records the oldest generation the worker's in-flight requests hold (0: none). Set inside a
    /// section, before <see cref="Exit"/>: a request popped in the section is then covered by the
    /// section or by the pin at every moment. A pin that moves forward may let deferred unmaps run.
    /// </summary>
    public void SetPin(long generation)
    {
        long old = _pinnedGeneration;
        if (old == generation) return;
        Volatile.Write(ref _pinnedGeneration, generation);
        if (old != Outside && (generation == Outside || generation > old)) _domain.PinReleased();
    }

    /// <summary>Leaves the section: the control path may now unmap what this worker saw (and does not pin).</summary>
    public void Exit() => Volatile.Write(ref _activeGeneration, Outside);

    /// <summary>
    /// The worker stops for good while requests it could not cancel are still in flight: the reader
    /// stays registered with its pin, so what they hold stays mapped, and no change waits for it again.
    /// </summary>
    public void Abandon()
    {
        Exit();
        Abandoned = true;
        _domain.PinReleased();
    }

    public void Dispose()
    {
        if (Abandoned) return;
        Exit();
        SetPin(Outside);
        _domain.Unregister(this);
    }
}
