using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// The device side of a packed virtqueue (virtio 1.2, 2.8): pops descriptor chains the driver made
/// available by wrap counter, and writes used descriptors back into the same ring, in completion
/// order (in order or not), each naming the buffer id and skipping the chain's descriptor count.
///
/// Threading and invalidation are those of <see cref="SplitQueue"/>: configuration on the control
/// path, everything else on the queue's one worker inside a memory read section after
/// <see cref="Attach"/>; ring pointers are re-derived lazily when the snapshot's generation changes.
///
/// Every guest-controlled value is checked (availability and wrap counter of every descriptor of a
/// chain, buffer ids, chain lengths, indirect tables, addresses); a violation throws
/// <see cref="VirtqueueException"/> inside and marks this queue (only) broken until it is reset.
/// </summary>
public sealed unsafe class PackedQueue : DeviceQueue
{
    private readonly PackedDirectRingAccessor _direct = new();
    private readonly PackedCheckedRingAccessor _checked = new();
    private PackedRingAccessor _accessor;

    // Where the next available chain starts, and the driver's wrap counter we expect there.
    private int _nextAvail;
    private bool _availWrap = true;
    // Where the next used descriptor goes, and our wrap counter.
    private int _nextUsed;
    private bool _usedWrap = true;

    // Per buffer id: popped and not yet used, and how many ring descriptors its chain took.
    private bool[] _idInFlight = [];
    private ushort[] _chainDescriptors = [];
    private int _descriptorsInFlight;

    // Batching: the first used descriptor of a batch gets its flags last, so the driver sees the batch at once.
    private int _pendingSlot = -1;
    private ushort _pendingFlags;
    private int _publishedUsed;   // extended position (PackedRingLayout.Extended) after the last flush
    private int _signalledUsed;
    private bool _signalledValid;
    private int _pendingInterrupt;
    private bool _kicksDisabled;

    // Crash recovery (INFLIGHT_SHMFD): buffers to process again, oldest first; the chain being popped, saved.
    private ushort[] _resubmit = [];
    private int _resubmitNext;
    private bool _recoveryPending = true;
    private PackedDescriptor[] _popped = [];

    // The last pops from the ring (not resubmissions), newest at _popTop - 1, so UndoPop can give them back.
    private int[] _popSlot = [];
    private bool[] _popWrap = [];
    private ushort[] _popId = [];
    private int _popTop, _freshPops;

    public PackedQueue(int index, MetadataAccess access = MetadataAccess.Direct) : base(index, access) => _accessor = _checked;

    /// <summary>True while the last bind used direct pointers.</summary>
    public bool UsingDirectAccess => ReferenceEquals(_accessor, _direct) && IsBound;

    public int NextAvail => _nextAvail;
    public bool AvailWrapCounter => _availWrap;
    public int NextUsed => _nextUsed;
    public bool UsedWrapCounter => _usedWrap;

    // ---- control path ----

    public override void SetSize(int size)
    {
        if (!PackedRingLayout.IsValidQueueSize(size)) throw new VirtqueueException($"queue size {size} is not between 1 and {PackedRingLayout.MaxQueueSize}");
        Size = size;
        _idInFlight = new bool[size];
        _chainDescriptors = new ushort[size];
        _popped = new PackedDescriptor[size];
        _popSlot = new int[size];
        _popWrap = new bool[size];
        _popId = new ushort[size];
        _popTop = _freshPops = 0;
        _descriptorsInFlight = 0;
        _freshPops = 0;
        ConfigurationChanged();
    }

    /// <summary>
    /// vhost-user's vring base for a packed ring: bits 0-14 the next available position, bit 15 the
    /// driver's wrap counter there; bits 16-30 and 31 the used position and wrap counter as QEMU
    /// records them. A frontend that sends only the low half (DPDK's form, or QEMU replaying a
    /// backend that returned only that) gets used = avail: no buffer was in flight when the ring stopped.
    /// </summary>
    public override void SetBase(uint vringBase)
    {
        _nextAvail = (int)(vringBase & 0x7fff);
        _availWrap = (vringBase & PackedRingLayout.WrapBit) != 0;
        uint used = vringBase >> 16;
        if (used != 0)
        {
            _nextUsed = (int)(used & 0x7fff);
            _usedWrap = (used & PackedRingLayout.WrapBit) != 0;
        }
        else
        {
            _nextUsed = _nextAvail;
            _usedWrap = _availWrap;
        }
        // Buffers in flight before the stop (if the frontend says so) are not ours to complete.
        Array.Clear(_idInFlight);
        _descriptorsInFlight = 0;
        _freshPops = 0;
        _pendingSlot = -1;
        _signalledValid = false;
        _recoveryPending = true;
        ConfigurationChanged();
    }

    /// <summary>The inverse of <see cref="SetBase"/>: avail position and wrap in the low half, used in the high half.</summary>
    public override uint GetBase()
        => (uint)_nextAvail | (_availWrap ? PackedRingLayout.WrapBit : 0u)
           | ((uint)_nextUsed | (_usedWrap ? PackedRingLayout.WrapBit : 0u)) << 16;

    public override void Reset()
    {
        ResetState();
        _nextAvail = _nextUsed = 0;
        _availWrap = _usedWrap = true;
        Array.Clear(_idInFlight);
        _descriptorsInFlight = 0;
        _freshPops = 0;
        _pendingSlot = -1;
        _signalledValid = false;
        _pendingInterrupt = 0;
        _resubmit = [];
        _resubmitNext = 0;
        _recoveryPending = true;
        Inflight = null;
    }

    // ---- worker ----

    /// <summary>Direct pointers if asked for and the rings allow them, else the checked accessor; then any recovery.</summary>
    protected override void Bind(GuestMemory memory)
    {
        if (_nextAvail >= Size || _nextUsed >= Size)
            throw new VirtqueueException($"vring base (avail {_nextAvail}, used {_nextUsed}) lies outside a ring of {Size}");
        _kicksDisabled = false; // the device area may be a different one now: write it afresh
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
        if (_recoveryPending)
        {
            _recoveryPending = false;
            if (Inflight is { } inflight) Recover(inflight);
        }
    }

    /// <summary>
    /// Where in-flight buffers are recorded for crash recovery (INFLIGHT_SHMFD), or null. Set on the
    /// control path before the queue starts; recovery runs at the first bind after <see cref="SetBase"/>.
    /// </summary>
    public PackedInflightTracker? Inflight { get; set; }

    public override RingLayout Layout => RingLayout.Packed;

    public override void UseInflight(nint region) => Inflight = region == 0 ? null : new PackedInflightTracker(region, Size);

    /// <summary>Buffers resubmitted from the inflight region since the queue started (for tests and logs).</summary>
    public override int Resubmitted => _resubmitNext;

    /// <summary>
    /// Takes the positions from the inflight region, not from the base the frontend restored (after a
    /// crash that base is stale): the recorded used position, moved past any batch the ring shows
    /// exposed after the last record, and the avail position that many descriptors in flight further on.
    /// </summary>
    private void Recover(PackedInflightTracker inflight)
    {
        if (inflight.Size != Size) throw new VirtqueueException($"inflight region is for {inflight.Size} descriptors, the queue has {Size}");
        if (!inflight.Load(_nextUsed, _usedWrap, out int used, out bool wrap)) return;
        for (int guard = 0; guard < Size; guard++)
        {
            var d = _accessor.ReadDescriptor(used);
            if (!PackedRingLayout.IsUsed(d.Flags, wrap)) break;
            int count = inflight.Complete(d.Id); // exposed just before the crash, not yet recorded
            if (count == 0) break;
            Advance(ref used, ref wrap, count);
        }
        inflight.SetUsed(used, wrap);
        _resubmit = inflight.Pending(out int descriptors);
        _resubmitNext = 0;
        Array.Clear(_idInFlight);
        foreach (ushort id in _resubmit)
        {
            _idInFlight[id] = true;
            _chainDescriptors[id] = (ushort)inflight.DescriptorCount(id);
        }
        _descriptorsInFlight = descriptors;
        _freshPops = 0;
        _nextUsed = used;
        _usedWrap = wrap;
        Advance(ref used, ref wrap, descriptors);
        _nextAvail = used;
        _availWrap = wrap;
    }

    /// <summary>
    /// Moves a ring position on by <paramref name="by"/> descriptors, flipping the wrap counter when it
    /// passes the end. Every advance goes through here: a count that is not 0..Size is a broken record
    /// (a value taken from memory the frontend writes), never a position outside the ring.
    /// </summary>
    private void Advance(ref int index, ref bool wrap, int by)
    {
        if ((uint)by > (uint)Size || (uint)index >= (uint)Size)
            throw new VirtqueueException($"ring position {index} advanced by {by} in a ring of {Size}");
        index += by;
        if (index >= Size) { index -= Size; wrap = !wrap; }
    }

    /// <summary>A resubmitted buffer first (after a reconnect), else the next one the driver made available.</summary>
    protected override bool Pop(DescriptorChain chain)
    {
        if (_resubmitNext < _resubmit.Length)
        {
            ushort id = _resubmit[_resubmitNext];
            ReadSavedChain(id, _popped.AsSpan(0, Inflight!.ReadSaved(id, _popped)), chain);
            _resubmitNext++;
            return true;
        }
        var head = _accessor.ReadDescriptor(_nextAvail);
        if (!PackedRingLayout.IsAvailable(head.Flags, _availWrap))
        {
            // AVAIL and USED both at our wrap counter: nothing either side may write at the next available slot.
            if (PackedRingLayout.IsUsed(head.Flags, _availWrap))
                throw new VirtqueueException($"descriptor {_nextAvail} carries used flags of the current pass (wrap counter confusion)");
            return false;
        }
        ReadChain(head, chain); // throws before any state changes
        return true;
    }

    /// <summary>
    /// Gives back the last <paramref name="count"/> popped chains, not yet used: the ring position and
    /// wrap counter go back to where they started and their ids leave flight (net receive queues pop
    /// buffers for a frame before knowing they are enough).
    /// </summary>
    public override void UndoPop(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, Size);
        int fresh = Math.Min(count, _freshPops);
        for (int i = 0; i < fresh; i++)
        {
            _popTop = (_popTop - 1 + Size) % Size;
            ushort id = _popId[_popTop];
            _nextAvail = _popSlot[_popTop];
            _availWrap = _popWrap[_popTop];
            _idInFlight[id] = false;
            _descriptorsInFlight -= _chainDescriptors[id];
            Inflight?.Complete(id);
        }
        _freshPops -= fresh;
        _resubmitNext -= count - fresh; // resubmitted buffers stay in flight; they are just popped again
        Counters.Requests -= count;
    }

    private void ReadChain(PackedDescriptor d, DescriptorChain chain)
    {
        chain.Reset(0);
        int slot = _nextAvail;
        bool wrap = _availWrap;
        // Never more descriptors than the ring holds beside those still in flight: more means the
        // driver reused slots the device has not returned, or a chain that runs round the ring.
        int budget = Size - _descriptorsInFlight;
        ushort id;
        while (true)
        {
            if (--budget < 0) throw new VirtqueueException($"descriptor chain from {_nextAvail} is longer than the free part of the ring ({Size - _descriptorsInFlight})");
            if (chain.DescriptorCount > 0) d = _accessor.ReadDescriptor(slot); // the head was read by TryPop
            if (!PackedRingLayout.IsAvailable(d.Flags, wrap))
                throw new VirtqueueException($"descriptor {slot} continues a chain but is not available in pass {(wrap ? 1 : 0)} (flags {d.Flags:x})");
            if (Inflight is not null) _popped[chain.DescriptorCount] = d; // the budget keeps this inside the ring's size
            chain.DescriptorCount++;
            if (++slot == Size) { slot = 0; wrap = !wrap; }
            if (d.IsIndirect)
            {
                if (chain.DescriptorCount != 1 || d.HasNext) throw new VirtqueueException($"indirect descriptor at {_nextAvail} is not alone in its chain");
                ReadIndirect(d, chain);
                id = d.Id;
                break;
            }
            BufferTranslation.AddDescriptor(Memory, d.Address, d.Length, d.IsDeviceWritable, chain);
            if (!d.HasNext) { id = d.Id; break; } // the buffer id is the last descriptor's
        }
        if (id >= Size) throw new VirtqueueException($"buffer id {id} is out of range (queue size {Size})");
        if (_idInFlight[id]) throw new VirtqueueException($"buffer id {id} is already in flight");
        _idInFlight[id] = true;
        _chainDescriptors[id] = (ushort)chain.DescriptorCount;
        _popSlot[_popTop] = _nextAvail;
        _popWrap[_popTop] = _availWrap;
        _popId[_popTop] = id;
        _popTop = (_popTop + 1) % Size;
        if (_freshPops < Size) _freshPops++;
        _descriptorsInFlight += chain.DescriptorCount;
        chain.Id = id;
        _nextAvail = slot;
        _availWrap = wrap;
        Inflight?.OnPopped(id, _popped.AsSpan(0, chain.DescriptorCount));
    }

    /// <summary>A buffer in flight at a crash, from the descriptors the inflight region saved (checked again: the region is the frontend's).</summary>
    private void ReadSavedChain(ushort id, ReadOnlySpan<PackedDescriptor> saved, DescriptorChain chain)
    {
        chain.Reset(id);
        if (saved.IsEmpty) throw new VirtqueueException($"inflight region: buffer {id} has no descriptors");
        foreach (var d in saved)
        {
            chain.DescriptorCount++;
            if (d.IsIndirect)
            {
                if (saved.Length != 1) throw new VirtqueueException($"inflight region: indirect descriptor of buffer {id} is not alone");
                ReadIndirect(d, chain);
                break;
            }
            BufferTranslation.AddDescriptor(Memory, d.Address, d.Length, d.IsDeviceWritable, chain);
        }
    }

    /// <summary>
    /// A packed indirect table is a plain array of descriptors: no NEXT links; every flag but WRITE,
    /// and the ids, are reserved and ignored (virtio 1.2, 2.8.11).
    /// </summary>
    private void ReadIndirect(in PackedDescriptor table, DescriptorChain chain)
    {
        if (table.Length == 0 || table.Length % PackedRingLayout.DescriptorSize != 0)
            throw new VirtqueueException($"indirect table length {table.Length} is not a non-zero multiple of 16");
        int count = (int)(table.Length / PackedRingLayout.DescriptorSize);
        if (count > Size) throw new VirtqueueException($"indirect table has {count} entries, more than the queue size {Size}");
        bool direct = Memory.TryTranslate(table.Address, table.Length, false, out nint tableHost);
        if (!direct) BufferTranslation.CheckIndirectTable(Memory, table.Address, table.Length);
        for (int i = 0; i < count; i++)
        {
            var d = direct
                ? System.Runtime.CompilerServices.Unsafe.ReadUnaligned<PackedDescriptor>((byte*)tableHost + i * PackedRingLayout.DescriptorSize)
                : BufferTranslation.ReadChecked<PackedDescriptor>(Memory, table.Address + (ulong)i * PackedRingLayout.DescriptorSize);
            BufferTranslation.AddDescriptor(Memory, d.Address, d.Length, d.IsDeviceWritable, chain);
        }
    }

    /// <summary>
    /// Writes a used descriptor for buffer <paramref name="id"/> at the next used position and skips
    /// the descriptors its chain took. Completion order is free (out of order is fine).
    /// </summary>
    public override void AddUsed(ushort id, uint written)
    {
        if (IsBroken) return;
        try
        {
            if (id >= Size || !_idInFlight[id]) throw new VirtqueueException($"device completed buffer id {id}, which is not in flight");
            int count = _chainDescriptors[id];
            _idInFlight[id] = false;
            _descriptorsInFlight -= count;
            int slot = _nextUsed;
            ushort flags = (ushort)(PackedRingLayout.UsedFlags(_usedWrap) | (written > 0 ? VirtqDescriptor.FlagWrite : 0));
            if (_pendingSlot < 0)
            {
                _accessor.WriteUsed(slot, id, written);
                _pendingSlot = slot;
                _pendingFlags = flags;
            }
            else
            {
                _accessor.WriteUsedAndPublish(slot, id, written, flags);
            }
            Inflight?.OnUsed(id);
            Advance(ref _nextUsed, ref _usedWrap, count);
        }
        catch (VirtqueueException e) { MarkBroken(e.Message); }
    }

    /// <summary>Exposes every used descriptor added so far: the batch's first flags, written last with release ordering.</summary>
    public override void FlushUsed()
    {
        if (IsBroken || _pendingSlot < 0) return;
        try
        {
            _accessor.PublishFlags(_pendingSlot, _pendingFlags);
            Inflight?.OnPublished(_nextUsed, _usedWrap);
            _pendingSlot = -1;
            _publishedUsed = PackedRingLayout.Extended(_nextUsed, _usedWrap, Size);
            _pendingInterrupt = 1;
        }
        catch (VirtqueueException e) { MarkBroken(e.Message); }
    }

    /// <summary>
    /// Whether the driver wants an interrupt for what was flushed since the last call, from the driver
    /// event suppression structure: enabled, disabled, or (EVENT_IDX) a specific used position.
    /// </summary>
    public override bool ShouldInterrupt()
    {
        if (IsBroken || _pendingInterrupt == 0) return false;
        _pendingInterrupt = 0;
        try
        {
            Interlocked.MemoryBarrier(); // our flags must be visible before we read the driver's wishes
            bool need;
            if (NotifyOnEmpty && !PackedRingLayout.IsAvailable(_accessor.ReadFlags(_nextAvail), _availWrap)) need = true;
            else
            {
                uint ev = _accessor.ReadDriverEvent();
                ushort flags = (ushort)((ev >> 16) & 3);
                need = flags switch
                {
                    PackedRingLayout.EventDisable => false,
                    // DESC is only meaningful with EVENT_IDX; without it (or reserved value 3) we notify.
                    PackedRingLayout.EventDescriptor when EventIndex => !_signalledValid
                        || PackedRingLayout.NeedsEvent((ushort)ev, _publishedUsed, _signalledUsed, Size),
                    _ => true,
                };
            }
            _signalledUsed = _publishedUsed;
            _signalledValid = true;
            if (need) Counters.Interrupts++;
            return need;
        }
        catch (VirtqueueException e)
        {
            MarkBroken(e.Message);
            return false;
        }
    }

    /// <summary>Asks the driver not to kick while we are busy (with EVENT_IDX the event position is simply left behind).</summary>
    public override void DisableKicks()
    {
        if (IsBroken || EventIndex || _kicksDisabled) return;
        try
        {
            _accessor.WriteDeviceEvent(0, PackedRingLayout.EventDisable);
            _kicksDisabled = true;
        }
        catch (VirtqueueException e) { MarkBroken(e.Message); }
    }

    /// <summary>Asks for a kick at the next available descriptor, then re-checks: true means work arrived meanwhile.</summary>
    public override bool EnableKicks()
    {
        if (IsBroken) return false;
        try
        {
            if (EventIndex) _accessor.WriteDeviceEvent((ushort)(_nextAvail | (_availWrap ? PackedRingLayout.WrapBit : 0)), PackedRingLayout.EventDescriptor);
            else _accessor.WriteDeviceEvent(0, PackedRingLayout.EventEnable);
            _kicksDisabled = false;
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
        try { return PackedRingLayout.IsAvailable(_accessor.ReadFlags(_nextAvail), _availWrap); }
        catch (VirtqueueException e)
        {
            MarkBroken(e.Message);
            return false;
        }
    }
}
