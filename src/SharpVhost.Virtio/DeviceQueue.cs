using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// What the split and packed device queues share: identity and configuration, the error state, the
/// lazy binding to a memory snapshot (re-derived when the generation or the configuration changes),
/// IOTLB misses that back out instead of failing, and dirty logging of a completed chain. Each layout
/// supplies how it binds its accessors, pops a chain and writes a used element.
/// </summary>
public abstract class DeviceQueue : IDeviceQueue
{
    private long _boundGeneration = -1;
    private int _configVersion, _boundConfigVersion = -1;

    protected DeviceQueue(int index, MetadataAccess access)
    {
        Index = index;
        Access = access;
    }

    public int Index { get; }
    public MetadataAccess Access { get; set; }
    public int Size { get; protected set; }
    public RingAddresses Rings { get; private set; }
    public bool EventIndex { get; set; }
    public bool NotifyOnEmpty { get; set; }
    public QueueCounters Counters { get; } = new();
    public string? BrokenReason { get; private set; }
    public bool IsBroken => BrokenReason is not null;

    /// <summary>
    /// The IOTLB miss that stopped the last <see cref="Attach"/> or <see cref="TryPop"/>, or null. The
    /// pop was backed out; the worker asks the frontend for the translation and tries again.
    /// </summary>
    public IotlbMiss? PendingMiss { get; private set; }

    /// <summary>The snapshot of the current read section (valid only inside it).</summary>
    protected GuestMemory Memory { get; private set; } = GuestMemory.Empty;

    /// <summary>Whether the queue is bound to a snapshot (a successful <see cref="Attach"/> since the last reset).</summary>
    protected bool IsBound => _boundGeneration >= 0;

    /// <summary>Split or packed: what the session sizes an inflight share for.</summary>
    public abstract RingLayout Layout { get; }

    /// <summary>
    /// Records in-flight requests for crash recovery in <paramref name="region"/>, this queue's share of an
    /// inflight area made for <see cref="Layout"/> and <see cref="Size"/> (the caller checked both), or
    /// in none (0). Set on the control path before the queue starts.
    /// </summary>
    public abstract void UseInflight(nint region);

    /// <summary>Requests resubmitted from the inflight record since the queue started (for tests and logs).</summary>
    public abstract int Resubmitted { get; }

    // ---- control path ----

    public abstract void SetSize(int size);
    public abstract void SetBase(uint vringBase);
    public abstract uint GetBase();
    public abstract void Reset();

    public void SetRings(RingAddresses rings)
    {
        Rings = rings;
        ConfigurationChanged();
    }

    /// <summary>The next <see cref="Attach"/> binds afresh (size, rings or base changed).</summary>
    protected void ConfigurationChanged() => _configVersion++;

    /// <summary>Forgets the error and the binding: part of every layout's <see cref="Reset"/>.</summary>
    protected void ResetState()
    {
        BrokenReason = null;
        PendingMiss = null;
        _boundGeneration = -1;
        Memory = GuestMemory.Empty;
        ConfigurationChanged();
    }

    // ---- worker ----

    /// <summary>
    /// Binds the queue to the snapshot of the current read section, re-validating the ring areas if the
    /// generation or the configuration changed since the last section. False if the queue is broken or
    /// the rings miss in the IOTLB (<see cref="PendingMiss"/>).
    /// </summary>
    public bool Attach(GuestMemory memory)
    {
        if (IsBroken) return false;
        if (memory.Generation == _boundGeneration && _configVersion == _boundConfigVersion && ReferenceEquals(memory, Memory)) return true;
        PendingMiss = null;
        try
        {
            if (Size == 0) throw new VirtqueueException("queue size was never set");
            if (IsBound) Counters.Revalidations++;
            Memory = memory;
            _boundGeneration = memory.Generation;
            _boundConfigVersion = _configVersion;
            Bind(memory);
            return true;
        }
        catch (Exception e) when (e is VirtqueueException or IotlbMissException)
        {
            return Stopped(e);
        }
    }

    /// <summary>
    /// A guest error breaks the queue; a miss is recorded and unbinds it (the next section binds afresh
    /// and a pop that missed changed nothing). False, for the caller to return.
    /// </summary>
    private bool Stopped(Exception e)
    {
        if (e is IotlbMissException miss)
        {
            PendingMiss = miss.Miss;
            _boundGeneration = -1;
        }
        else
        {
            MarkBroken(e.Message);
        }
        return false;
    }

    /// <summary>Chooses and binds the accessors for <paramref name="memory"/>; throws <see cref="VirtqueueException"/> or a miss.</summary>
    protected abstract void Bind(GuestMemory memory);

    /// <summary>Marks the queue broken (e.g. a device-level protocol error) so it stops until reset.</summary>
    public void MarkBroken(string reason)
    {
        BrokenReason ??= reason;
        Counters.Errors++;
    }

    /// <summary>
    /// Pops the next available chain into <paramref name="chain"/>. False when none is available, the
    /// queue is broken (see <see cref="BrokenReason"/>), or a translation missed (see <see cref="PendingMiss"/>).
    /// </summary>
    public bool TryPop(DescriptorChain chain)
    {
        if (IsBroken || PendingMiss is not null) return false;
        try
        {
            if (!Pop(chain)) return false;
            Counters.Requests++;
            Counters.ReadableBytes += chain.ReadableBytes;
            return true;
        }
        catch (Exception e) when (e is VirtqueueException or IotlbMissException)
        {
            return Stopped(e); // a layout changes its state only after all of a chain translated
        }
    }

    /// <summary>The layout's pop; throws on a guest error or a miss, having changed nothing.</summary>
    protected abstract bool Pop(DescriptorChain chain);

    public abstract void UndoPop(int count);

    /// <summary>
    /// Adds a used element for <paramref name="chain"/> without publishing it. With dirty logging on,
    /// every device-writable page of the chain is logged now, before anything can expose it.
    /// </summary>
    public void AddUsed(DescriptorChain chain, uint written)
    {
        if (Memory.Log is { } log)
            foreach (var s in chain.Writable) log.Mark(s.GuestAddress, s.Length);
        AddUsed(chain.Id, written);
        Counters.WritableBytes += written;
    }

    /// <summary>Adds and publishes one used element.</summary>
    public void Push(DescriptorChain chain, uint written)
    {
        AddUsed(chain, written);
        FlushUsed();
    }

    /// <summary>Adds a used element naming <paramref name="id"/> without publishing it (batching).</summary>
    public abstract void AddUsed(ushort id, uint written);
    public abstract void FlushUsed();
    public abstract bool ShouldInterrupt();
    public abstract void DisableKicks();
    public abstract bool EnableKicks();
    public abstract bool HasAvailable();
}
