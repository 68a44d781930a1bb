namespace SharpVhost.Memory;

/// <summary>
/// Owns the current <see cref="GuestMemory"/> snapshot and is the one way the control path changes
/// memory (the MMU-notifier analogue). Every change publishes a new snapshot with a higher
/// generation, waits for a grace period (every reader that might still use the old snapshot has left
/// its section), and only then unmaps what was retired. When a change method returns, no worker can
/// touch the old mappings again: rule 3 of the kernel review. See docs/invalidation.md.
///
/// Readers never block the control path for long: they hold a section only while processing a batch.
/// Workers cache derived state (ring pointers) tagged with the generation and re-validate lazily when
/// a section hands them a newer one — the interval notifier's read_begin/read_retry in another form.
/// </summary>
public sealed class GuestMemoryDomain : IDisposable
{
    private readonly object _changeLock = new();
    private readonly List<MemoryReader> _readers = [];
    private MemoryReader[] _readerArray = [];
    private GuestMemory _current = GuestMemory.Empty;
    private long _generation;
    private long _gracePeriods;

    public GuestMemory Current => Volatile.Read(ref _current);

    /// <summary>How many grace periods have completed (for tests and metrics).</summary>
    public long GracePeriods => Interlocked.Read(ref _gracePeriods);

    /// <summary>A reader slot for one worker thread. Dispose it when the worker stops.</summary>
    public MemoryReader RegisterReader()
    {
        var reader = new MemoryReader(this);
        lock (_changeLock)
        {
            _readers.Add(reader);
            Volatile.Write(ref _readerArray, _readers.ToArray());
        }
        return reader;
    }

    internal void Unregister(MemoryReader reader)
    {
        lock (_changeLock)
        {
            _readers.Remove(reader);
            Volatile.Write(ref _readerArray, _readers.ToArray());
            RetireDeferred();
        }
    }

    /// <summary>Replaces the whole table (SET_MEM_TABLE). Regions not in the new table are unmapped before this returns.</summary>
    public void ReplaceAll(IReadOnlyCollection<MemoryRegion> regions)
        => Change(current => (GuestMemory.Create(regions, current.Log, NextGeneration(), current.Iotlb), current.Regions.Except(regions).ToArray(), null), waitForInFlight: true);

    /// <summary>Adds one region (ADD_MEM_REG).</summary>
    public void AddRegion(MemoryRegion region)
    {
        if (Current.Regions.Count >= GuestMemory.MaxRegions) throw new GuestMemoryException($"no free memory slot (limit {GuestMemory.MaxRegions})");
        Change(current => (GuestMemory.Create(current.Regions.Append(region), current.Log, NextGeneration(), current.Iotlb), [], null));
    }

    /// <summary>Removes the region matching <paramref name="description"/> (REM_MEM_REG); false if none matches.</summary>
    public bool RemoveRegion(RegionDescription description)
    {
        bool found = false;
        Change(current =>
        {
            var victim = current.Regions.FirstOrDefault(r => r.GuestPhysicalAddress == description.GuestPhysicalAddress
                && r.Size == description.Size && r.FrontendVirtualAddress == description.FrontendVirtualAddress);
            if (victim is null) return (current, [], null);
            found = true;
            return (GuestMemory.Create(current.Regions.Where(r => r != victim), current.Log, NextGeneration(), current.Iotlb), [victim], null);
        }, waitForInFlight: true);
        return found;
    }

    /// <summary>
    /// Starts, replaces or stops dirty logging (SET_LOG_BASE, LOG_ALL off). The old log is unmapped after
    /// the grace period. In-flight requests do not hold the log: their pages are marked at completion,
    /// in the log current then, before the used index exposes them, so this waits for sections only.
    /// </summary>
    public void SetLog(DirtyLog? log)
        => Change(current => (current.WithLog(log, NextGeneration()), [], current.Log == log ? null : current.Log));

    /// <summary>
    /// A grace period without a memory change: for ring-address changes and ring stops, so that cached
    /// ring pointers are re-derived and no worker is still using the previous ring configuration.
    /// </summary>
    public void Invalidate() => Change(current => (current.WithGeneration(NextGeneration()), [], null));

    /// <summary>Drops every region, the log and the IOTLB (RESET_OWNER, disconnect).</summary>
    public void Clear() => Change(current => (GuestMemory.Create([], null, NextGeneration()), current.Regions.ToArray(), current.Log), waitForInFlight: true);

    // ---- device IOTLB (ACCESS_PLATFORM) ----

    /// <summary>
    /// Turns address translation through an IOTLB on (an empty one: every access misses until the
    /// frontend sends updates) or off; with <paramref name="startEmpty"/> an IOTLB already on is emptied
    /// too (a device start). Dropping translations waits like an invalidation: one grace period at most.
    /// </summary>
    public void UseIotlb(bool on, bool startEmpty = false)
    {
        var tlb = Current.Iotlb;
        if ((tlb is not null) == on && !(startEmpty && tlb is { Count: > 0 })) return;
        Change(current => (current.WithIotlb(on ? Iotlb.Empty : null, NextGeneration()), [], null), waitForInFlight: true);
    }

    /// <summary>
    /// Adds a translation (IOTLB update). Adding takes nothing away from a reader, so it is published
    /// without a grace period, unless it replaces part of an existing entry (a remap), which is waited
    /// for like an invalidation.
    /// </summary>
    public void UpdateIotlb(IotlbEntry entry)
    {
        lock (_changeLock) // (reentrant: Change takes it again)
        {
            var tlb = Current.Iotlb ?? throw new GuestMemoryException("IOTLB update without ACCESS_PLATFORM");
            var next = tlb.Add(entry); // validates before anything is published
            bool remap = tlb.Overlaps(entry.Iova, entry.Size);
            Change(current => (current.WithIotlb(next, NextGeneration()), [], null), waitForReaders: remap, waitForInFlight: remap);
        }
    }

    /// <summary>
    /// Drops the translations of [iova, iova+size) (IOTLB invalidate). When this returns no worker can
    /// still use them, nor any ring pointer derived from them: the same grace period as a memory-table change.
    /// Always waits, even if nothing is cached there now: an entry evicted earlier may still be in use.
    /// </summary>
    public void InvalidateIotlb(ulong iova, ulong size)
    {
        if (Current.Iotlb is null) throw new GuestMemoryException("IOTLB invalidation without ACCESS_PLATFORM");
        Change(current => (current.WithIotlb(current.Iotlb!.Invalidate(iova, size), NextGeneration()), [], null), waitForInFlight: true);
        Interlocked.Increment(ref _iotlbInvalidations);
    }

    private long _iotlbInvalidations;

    /// <summary>How many IOTLB invalidations have completed their grace period (for tests and metrics).</summary>
    public long IotlbInvalidations => Interlocked.Read(ref _iotlbInvalidations);

    /// <summary>
    /// Waits until a snapshot newer than <paramref name="generation"/> is published, or the timeout
    /// passes: a worker waiting for an IOTLB update after a miss (outside any read section). True if one was.
    /// </summary>
    public bool WaitForChange(long generation, int timeoutMilliseconds)
    {
        lock (_changed)
        {
            if (Current.Generation != generation) return true;
            Monitor.Wait(_changed, timeoutMilliseconds);
            return Current.Generation != generation;
        }
    }

    private readonly object _changed = new();

    private long NextGeneration() => ++_generation;

    /// <param name="waitForInFlight">The change takes memory or translations away that in-flight requests may
    /// still use (a region, an IOTLB entry): wait for the workers' pins too, not only their sections.</param>
    private void Change(Func<GuestMemory, (GuestMemory next, MemoryRegion[] retired, DirtyLog? retiredLog)> change,
        bool waitForReaders = true, bool waitForInFlight = false)
    {
        lock (_changeLock)
        {
            var current = _current;
            var (next, retired, retiredLog) = change(current);
            if (ReferenceEquals(next, current)) return;
            // Publish, then wait: a reader either sees the new snapshot or is seen by the wait below
            // (both sides do store -> full fence -> load; see MemoryReader.Enter).
            Interlocked.Exchange(ref _current, next);
            lock (_changed) Monitor.PulseAll(_changed);
            if (!waitForReaders && retired.Length == 0 && retiredLog is null) return;
            WaitForReadersOlderThan(next.Generation);
            bool pinned = waitForInFlight && !WaitForPinsOlderThan(next.Generation);
            Interlocked.Increment(ref _gracePeriods);
            if (pinned && (retired.Length > 0 || retiredLog is not null))
            {
                // Requests that ignored their cancellation still write into this memory: keep it mapped
                // until they complete (the pin moves), however long that is. Never unmapped under them.
                _deferred.Add(new Deferred(next.Generation, retired, retiredLog));
                Volatile.Write(ref _deferredCount, _deferred.Count);
                Interlocked.Increment(ref _deferredRetirements);
            }
            else
            {
                foreach (var region in retired) region.Dispose();
                retiredLog?.Dispose();
            }
            RetireDeferred();
        }
    }

    // ---- requests in flight (asynchronous I/O holds guest buffers beyond a section) ----

    /// <summary>
    /// How long a change that retires memory waits for in-flight requests holding the old memory before
    /// it asks their workers to cancel them, and then again for the cancellations to complete. Past both,
    /// the change returns and what it retired stays mapped until those requests are done.
    /// </summary>
    public TimeSpan InFlightWait { get; set; } = TimeSpan.FromSeconds(5);
    public TimeSpan CancelWait { get; set; } = TimeSpan.FromSeconds(1);

    private readonly record struct Deferred(long Generation, MemoryRegion[] Regions, DirtyLog? Log);
    private readonly List<Deferred> _deferred = [];
    private int _deferredCount;
    private long _pinWaits, _cancelRequests, _deferredRetirements;

    /// <summary>Changes that had to wait for in-flight requests (for tests and metrics).</summary>
    public long InFlightWaits => Interlocked.Read(ref _pinWaits);
    /// <summary>Changes whose wait ran past <see cref="InFlightWait"/> and asked workers to cancel.</summary>
    public long CancelRequests => Interlocked.Read(ref _cancelRequests);
    /// <summary>Changes that returned with retired memory still in use, unmapped later.</summary>
    public long DeferredRetirements => Interlocked.Read(ref _deferredRetirements);
    /// <summary>Retirements still waiting for requests that hold them.</summary>
    public int DeferredPending => Volatile.Read(ref _deferredCount);

    private bool Pinned(MemoryReader reader, long generation)
    {
        long pin = reader.PinnedGeneration;
        return pin != MemoryReader.Outside && pin < generation;
    }

    /// <summary>
    /// Waits until no live worker pins a generation older than <paramref name="generation"/>: bounded by
    /// <see cref="InFlightWait"/>, then cancellation and <see cref="CancelWait"/>. False if some pin
    /// outlasted both (or belongs to an abandoned worker).
    /// </summary>
    private bool WaitForPinsOlderThan(long generation)
    {
        var readers = Volatile.Read(ref _readerArray);
        if (!readers.Any(r => Pinned(r, generation))) return true;
        Interlocked.Increment(ref _pinWaits);
        if (WaitForPins(readers, generation, InFlightWait)) return true;
        Interlocked.Increment(ref _cancelRequests);
        foreach (var r in readers)
            if (!r.Abandoned && Pinned(r, generation)) r.RequestCancel(generation);
        return WaitForPins(readers, generation, CancelWait);
    }

    private static bool WaitForPins(MemoryReader[] readers, long generation, TimeSpan bound)
    {
        long deadline = Environment.TickCount64 + (long)bound.TotalMilliseconds;
        foreach (var reader in readers)
        {
            var spin = new SpinWait();
            while (reader.PinnedGeneration is var pin && pin != MemoryReader.Outside && pin < generation)
            {
                if (reader.Abandoned || Environment.TickCount64 >= deadline) return false;
                if (spin.Count < 20) spin.SpinOnce(sleep1Threshold: -1);
                else Thread.Sleep(1); // in-flight I/O takes milliseconds: no core burnt waiting for it
            }
        }
        return true;
    }

    /// <summary>A worker's pin moved forward: deferred unmaps may be due (called by workers; never blocks them).</summary>
    internal void PinReleased()
    {
        if (Volatile.Read(ref _deferredCount) == 0 || !Monitor.TryEnter(_changeLock)) return;
        try { RetireDeferred(); }
        finally { Monitor.Exit(_changeLock); }
    }

    /// <summary>Unmaps deferred retirements no pin reaches any more (under the change lock).</summary>
    private void RetireDeferred()
    {
        if (_deferred.Count == 0) return;
        var readers = Volatile.Read(ref _readerArray);
        for (int i = _deferred.Count - 1; i >= 0; i--)
        {
            var d = _deferred[i];
            if (readers.Any(r => Pinned(r, d.Generation))) continue;
            foreach (var region in d.Regions) region.Dispose();
            d.Log?.Dispose();
            _deferred.RemoveAt(i);
        }
        Volatile.Write(ref _deferredCount, _deferred.Count);
    }

    private void WaitForReadersOlderThan(long generation)
    {
        foreach (var reader in Volatile.Read(ref _readerArray))
        {
            var spin = new SpinWait();
            while (true)
            {
                long seen = reader.ActiveGeneration;
                if (seen == MemoryReader.Outside || seen >= generation) break;
                spin.SpinOnce(); // spins, then yields, then sleeps: a long batch must not burn the control thread's core
            }
        }
    }

    public void Dispose() => Clear();
}
