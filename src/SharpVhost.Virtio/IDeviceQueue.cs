using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// The device side of a virtqueue, whatever its layout (split or packed): what devices and the
/// vhost-user session use, so that neither knows which ring layout it serves.
/// Configuration members run on the control path; the rest on the queue's one worker thread,
/// inside a memory read section after <see cref="Attach"/>.
/// </summary>
public interface IDeviceQueue
{
    int Index { get; }
    int Size { get; }
    MetadataAccess Access { get; set; }
    bool EventIndex { get; set; }
    bool NotifyOnEmpty { get; set; }
    QueueCounters Counters { get; }
    string? BrokenReason { get; }
    bool IsBroken { get; }
    /// <summary>
    /// Set when an <see cref="Attach"/> or <see cref="TryPop"/> stopped at an address the IOTLB does not
    /// cover (nothing was consumed); cleared by the next <see cref="Attach"/>.
    /// </summary>
    IotlbMiss? PendingMiss { get; }

    RingLayout Layout { get; }
    /// <summary>Requests resubmitted from the inflight record since the queue started.</summary>
    int Resubmitted { get; }

    // control path
    /// <summary>Crash-recovery records in this queue's share of an inflight area made for its layout and size, or none (0).</summary>
    void UseInflight(nint region);
    void SetSize(int size);
    void SetRings(RingAddresses rings);
    /// <summary>vhost-user's vring base: the next avail index (packed: plus the wrap counter in bit 15).</summary>
    void SetBase(uint vringBase);
    uint GetBase();
    void Reset();

    // worker
    bool Attach(GuestMemory memory);
    void MarkBroken(string reason);
    bool TryPop(DescriptorChain chain);
    /// <summary>Gives back the last <paramref name="count"/> popped chains, not yet used (net RX: buffers that turned out too few for a frame).</summary>
    void UndoPop(int count);
    void AddUsed(DescriptorChain chain, uint written);
    void FlushUsed();
    bool ShouldInterrupt();
    void DisableKicks();
    bool EnableKicks();
    /// <summary>Whether the driver has made a chain available that we have not popped (a poll: no side effect on the ring).</summary>
    bool HasAvailable();
}
