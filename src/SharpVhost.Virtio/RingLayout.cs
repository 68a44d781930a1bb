namespace SharpVhost.Virtio;

/// <summary>
/// The two virtqueue layouts. One value, taken from the negotiated features (RING_PACKED), decides the
/// device queue's type, the size of its share of an inflight area and the tracker laid over that share,
/// so the three cannot disagree.
/// </summary>
public enum RingLayout : byte
{
    Split,
    Packed,
}

public static class RingLayouts
{
    public static RingLayout FromFeatures(ulong features)
        => VirtioFeatureBits.Has(features, VirtioFeatureBits.RingPacked) ? RingLayout.Packed : RingLayout.Split;

    public static bool IsValidQueueSize(this RingLayout layout, int size)
        => layout == RingLayout.Packed ? PackedRingLayout.IsValidQueueSize(size) : SplitRingLayout.IsValidQueueSize(size);

    /// <summary>Bytes one queue of <paramref name="size"/> takes in an inflight area made for <paramref name="layout"/>.</summary>
    public static ulong InflightRegionSize(this RingLayout layout, int size)
        => layout == RingLayout.Packed ? PackedInflightTracker.RegionSize(size) : SplitInflightTracker.RegionSize(size);

    /// <summary>A device queue of <paramref name="layout"/>.</summary>
    public static DeviceQueue CreateDeviceQueue(this RingLayout layout, int index, MetadataAccess access)
        => layout == RingLayout.Packed ? new PackedQueue(index, access) : new SplitQueue(index, access);
}
