using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// The device side of a split virtqueue: pops descriptor chains the driver made available and
/// returns them through the used ring, with EVENT_IDX or flag-based notification suppression.
///
/// Threading: configuration methods run on the control path while the worker is stopped (or are
/// followed by <see cref="GuestMemoryDomain.Invalidate"/>); everything else runs on the queue's one
/// worker, inside a memory read section, after <see cref="Attach"/> with that section's snapshot.
/// Ring pointers are re-derived lazily whenever the snapshot's generation changes.
///
/// Every guest-controlled value is checked; a violation throws <see cref="VirtqueueException"/>
/// and marks this queue (only) broken until it is reset.
/// </summary>
public sealed unsafe class SplitQueue : DeviceQueue
{
    private readonly DirectRingAccessor _direct = new();
    private readonly CheckedRingAccessor _checked = new();
    private RingAccessor _accessor;

    private int _freshPops;         // pops from the avail ring (not resubmissions) that UndoPop may give back, at most Size
    private ushort _lastAvail;      // next avail slot to consume (free-running)
    private ushort _cachedAvailIdx; // last avail.idx read from the driver
    private ushort _usedIndex;      // next used idx to publish (free-running)
    private ushort _publishedUsed;
    private ushort _signalledUsed;
    private bool _signalledValid;
    private bool _usedIndexKnown;
    private ushort[] _resubmit = [];  // heads to process again after a reconnect, oldest first
    private ushort[] _poppedHeads = []; // the head popped at each avail slot, so UndoPop never reads the ring again
    private int _resubmitNext;
    private int _pendingInterrupt;

    public SplitQueue(int index, MetadataAccess access = MetadataAccess.Direct) : base(index, access) => _accessor = _checked;

    /// <summary>True while the last bind used direct pointers (false: checked accessor or not bound).</summary>
    public bool UsingDirectAccess => ReferenceEquals(_accessor, _direct) && IsBound;

    /// <summary>The index of the next avail entry the device will consume (GET/SET_VRING_BASE).</summary>
    public ushort LastAvailIndex => _lastAvail;
    public ushort UsedIndex => _usedIndex;

    // ---- control path ----

    public override void SetSize(int size)
    {
        if (!SplitRingLayout.IsValidQueueSize(size)) throw new VirtqueueException($"queue size {size} is not a power of two between 1 and {SplitRingLayout.MaxQueueSize}");
        Size = size;
        _poppedHeads = new ushort[size];
        ConfigurationChanged();
    }

    /// <summary>Where to resume: the driver's next avail entry; the used index is then read from the ring.</summary>
    public void SetBase(ushort lastAvailIndex)
    {
        _lastAvail = _cachedAvailIdx = lastAvailIndex;
        _freshPops = 0;
        _usedIndexKnown = false;
        _signalledValid = false;
        ConfigurationChanged();
    }

    public override void SetBase(uint vringBase)
    {
        if (vringBase > ushort.MaxValue) throw new VirtqueueException($"vring base {vringBase} does not fit a split ring's 16-bit index");
        SetBase((ushort)vringBase);
    }

    public override uint GetBase() => _lastAvail;

    /// <summary>Forgets the error and the binding (ring reset).</summary>
    public override void Reset()
    {
        ResetState();
        _lastAvail = _cachedAvailIdx = _usedIndex = _publishedUsed = 0;
        _pendingInterrupt = 0;
        _usedIndexKnown = false;
        _signalledValid = false;
        _resubmit = [];
        _resubmitNext = 0;
        _freshPops = 0;
        Inflight = null;
    }

    // ---- worker ----

    /// <summary>Direct pointers if asked for and the rings allow them, else the checked accessor; then the used index and any recovery.</summary>
    protected override void Bind(GuestMemory memory)
    {
        if (Access == MetadataAccess.Direct && _direct.Bind(memory, Rings, Size))
        {
            _accessor = _direct;
            Counters.DirectBinds++;
        }
        else
        {
            if (Access == MetadataAccess.Direct) Counters.DirectFallbacks++;
            if (!_checked.Bind(memory, Rings, Size)) throw new VirtqueueException(_checked.BindError!);
            _accessor = _checked;
            Counters.CheckedBinds++;
        }
        if (!_usedIndexKnown)
        {
            _usedIndex = _publishedUsed = _accessor.ReadUsedIndex();
            _usedIndexKnown = true;
            if (Inflight is { } inflight)
            {
                // Every chain ever popped is either used or still in flight, so the next avail entry
                // follows them all, whatever base the frontend restored.
                _resubmit = inflight.Recover(_usedIndex, out int inFlight);
                _resubmitNext = 0;
                _freshPops = 0;
                _lastAvail = _cachedAvailIdx = (ushort)(_usedIndex + inFlight);
            }
        }
    }

    /// <summary>
    /// Where in-flight requests are recorded for crash recovery (INFLIGHT_SHMFD), or null. Set on the
    /// control path before the queue starts; recovery runs at the first bind after <see cref="SetBase"/>.
    /// </summary>
    public SplitInflightTracker? Inflight { get; set; }

    public override RingLayout Layout => RingLayout.Split;

    public override void UseInflight(nint region) => Inflight = region == 0 ? null : new SplitInflightTracker(region, Size);

    /// <summary>Requests resubmitted from the inflight region since the queue started (for tests and logs).</summary>
    public override int Resubmitted => _resubmitNext;

    /// <summary>A resubmitted chain first (after a reconnect), else the next one the driver made available.</summary>
    protected override bool Pop(DescriptorChain chain)
    {
        if (_resubmitNext < _resubmit.Length)
        {
            ReadChain(_resubmit[_resubmitNext], chain);
            _resubmitNext++;
            return true;
        }
        if (_lastAvail == _cachedAvailIdx)
        {
            ushort availIdx = _accessor.ReadAvailIndex(); // acquire: entries are read after the index
            if ((ushort)(availIdx - _lastAvail) > Size)
                throw new VirtqueueException($"avail index {availIdx} is more than the queue size ahead of {_lastAvail}");
            _cachedAvailIdx = availIdx;
            if (availIdx == _lastAvail) return false;
        }
        ushort head = _accessor.ReadAvailEntry(_lastAvail & (Size - 1));
        if (head >= Size) throw new VirtqueueException($"avail entry names descriptor {head}, queue size is {Size}");
        ReadChain(head, chain); // throws before any state changes
        Inflight?.OnPopped(head);
        _poppedHeads[_lastAvail & (Size - 1)] = head;
        _lastAvail++;
        if (_freshPops < Size) _freshPops++;
        return true;
    }

    /// <summary>
    /// Gives back the last <paramref name="count"/> popped chains, unused, so the next pops return them
    /// again: a net receive queue pops buffers for a frame before it knows they are enough (mergeable
    /// RX buffers) and returns them when they are not. Only for chains not yet added to the used ring.
    /// </summary>
    public override void UndoPop(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, Size);
        // Fresh pops come after any resubmitted ones: give those back first, clearing their inflight marks.
        int fresh = Math.Min(count, _freshPops);
        for (int i = 0; i < fresh; i++)
        {
            _lastAvail--;
            Inflight?.OnUnpopped(_poppedHeads[_lastAvail & (Size - 1)]);
        }
        _freshPops -= fresh;
        _resubmitNext -= count - fresh; // resubmitted requests stay in flight; they are just popped again
        Counters.Requests -= count;
    }

    private void ReadChain(ushort head, DescriptorChain chain)
    {
        chain.Reset(head);
        int index = head;
        int budget = Size; // a chain never has more descriptors than the queue: more means a loop
        while (true)
        {
            if (--budget < 0) throw new VirtqueueException($"descriptor chain from {head} is longer than the queue (loop?)");
            var d = _accessor.ReadDescriptor(index);
            chain.DescriptorCount++;
            if (d.IsIndirect)
            {
                if (chain.DescriptorCount != 1 || d.HasNext) throw new VirtqueueException($"indirect descriptor {index} is not alone in its chain");
                ReadIndirect(d, chain, budget + 1);
                return;
            }
            BufferTranslation.AddDescriptor(Memory, d.Address, d.Length, d.IsDeviceWritable, chain);
            if (!d.HasNext) return;
            index = d.Next;
            if (index >= Size) throw new VirtqueueException($"descriptor {d.Next} named by a NEXT link is outside the queue (size {Size})");
        }
    }

    private void ReadIndirect(in VirtqDescriptor table, DescriptorChain chain, int maxEntries)
    {
        if (table.Length == 0 || table.Length % SplitRingLayout.DescriptorSize != 0)
            throw new VirtqueueException($"indirect table length {table.Length} is not a non-zero multiple of 16");
        int count = (int)(table.Length / SplitRingLayout.DescriptorSize);
        if (count > maxEntries) throw new VirtqueueException($"indirect table has {count} entries, more than the queue size {Size}");
        bool direct = Memory.TryTranslate(table.Address, table.Length, false, out nint tableHost);
        if (!direct) BufferTranslation.CheckIndirectTable(Memory, table.Address, table.Length);
        int index = 0;
        for (int seen = 0; ; seen++)
        {
            if (seen >= count) throw new VirtqueueException("indirect chain is longer than its table (loop?)");
            var d = direct
                ? System.Runtime.CompilerServices.Unsafe.ReadUnaligned<VirtqDescriptor>((byte*)tableHost + index * SplitRingLayout.DescriptorSize)
                : BufferTranslation.ReadChecked<VirtqDescriptor>(Memory, table.Address + (ulong)index * SplitRingLayout.DescriptorSize);
            if (d.IsIndirect) throw new VirtqueueException("nested indirect table");
            BufferTranslation.AddDescriptor(Memory, d.Address, d.Length, d.IsDeviceWritable, chain);
            if (!d.HasNext) return;
            index = d.Next;
            if (index >= count) throw new VirtqueueException($"indirect NEXT link {d.Next} is outside its table of {count}");
        }
    }

    /// <summary>Writes a used element without publishing it (batching).</summary>
    public override void AddUsed(ushort id, uint written)
    {
        if (IsBroken) return;
        try
        {
            _accessor.WriteUsedElement(_usedIndex & (Size - 1), id, written);
            Inflight?.OnUsed(id);
            _usedIndex++;
        }
        catch (VirtqueueException e) { MarkBroken(e.Message); }
    }

    /// <summary>Publishes every used element added so far with one index write (release ordering).</summary>
    public override void FlushUsed()
    {
        if (IsBroken || _publishedUsed == _usedIndex) return;
        try
        {
            _accessor.PublishUsedIndex(_usedIndex);
            Inflight?.OnPublished(_usedIndex);
            _publishedUsed = _usedIndex;
            _pendingInterrupt = 1;
        }
        catch (VirtqueueException e) { MarkBroken(e.Message); }
    }

    /// <summary>
    /// Whether the driver wants an interrupt for what was published since the last call: EVENT_IDX's
    /// used_event rule, else the NO_INTERRUPT flag, overridden by NOTIFY_ON_EMPTY when the ring ran dry.
    /// </summary>
    public override bool ShouldInterrupt()
    {
        if (IsBroken || _pendingInterrupt == 0) return false;
        _pendingInterrupt = 0;
        try
        {
            Interlocked.MemoryBarrier(); // the used index must be visible before we read the driver's wishes
            if (NotifyOnEmpty && _accessor.ReadAvailIndex() == _lastAvail) { NoteInterrupt(); return true; }
            bool need;
            if (EventIndex)
            {
                ushort usedEvent = _accessor.ReadUsedEvent();
                need = !_signalledValid || SplitRingLayout.NeedsEvent(usedEvent, _publishedUsed, _signalledUsed);
                _signalledUsed = _publishedUsed;
                _signalledValid = true;
            }
            else
            {
                need = (_accessor.ReadAvailFlags() & SplitRingLayout.AvailNoInterrupt) == 0;
            }
            if (need) Counters.Interrupts++;
            return need;
        }
        catch (VirtqueueException e)
        {
            MarkBroken(e.Message);
            return false;
        }
    }

    private void NoteInterrupt()
    {
        Counters.Interrupts++;
        _signalledUsed = _publishedUsed;
        _signalledValid = true;
    }

    /// <summary>Asks the driver not to kick while we are busy (no-op with EVENT_IDX, where avail_event is simply left behind).</summary>
    public override void DisableKicks()
    {
        if (IsBroken || EventIndex) return;
        try { _accessor.WriteUsedFlags(SplitRingLayout.UsedNoNotify); }
        catch (VirtqueueException e) { MarkBroken(e.Message); }
    }

    /// <summary>
    /// Asks the driver to kick for the next buffer, then re-checks the ring: true means work arrived
    /// meanwhile and the caller must keep processing instead of sleeping (the classic lost-wakeup fix).
    /// </summary>
    public override bool EnableKicks()
    {
        if (IsBroken) return false;
        try
        {
            if (EventIndex) _accessor.WriteAvailEvent(_lastAvail);
            else _accessor.WriteUsedFlags(0);
        }
        catch (VirtqueueException e)
        {
            MarkBroken(e.Message);
            return false;
        }
        Interlocked.MemoryBarrier(); // our wish must be visible before we look again: else a kick could be lost
        return HasAvailable();
    }

    public override bool HasAvailable()
    {
        if (IsBroken) return false;
        try { return _accessor.ReadAvailIndex() != _lastAvail; }
        catch (VirtqueueException e)
        {
            MarkBroken(e.Message);
            return false;
        }
    }
}
