namespace SharpVhost.Virtio;

/// <summary>Sizes and offsets of the three split-ring areas (virtio 1.2, 2.7).</summary>
public static class SplitRingLayout
{
    public const int MaxQueueSize = 32768;
    public const int DescriptorSize = 16;
    public const int UsedElementSize = 8;

    /// <summary>avail.flags bit: the driver asks not to be interrupted.</summary>
    public const ushort AvailNoInterrupt = 1;
    /// <summary>used.flags bit: the device asks not to be kicked.</summary>
    public const ushort UsedNoNotify = 1;

    public const ulong AvailFlagsOffset = 0, AvailIdxOffset = 2, AvailRingOffset = 4;
    public const ulong UsedFlagsOffset = 0, UsedIdxOffset = 2, UsedRingOffset = 4;

    public static ulong DescriptorTableSize(int queueSize) => (ulong)queueSize * DescriptorSize;
    /// <summary>Includes used_event (present whether or not EVENT_IDX is negotiated; drivers allocate it).</summary>
    public static ulong AvailSize(int queueSize) => 6 + 2 * (ulong)queueSize;
    /// <summary>Includes avail_event.</summary>
    public static ulong UsedSize(int queueSize) => 6 + 8 * (ulong)queueSize;
    public static ulong UsedEventOffset(int queueSize) => AvailRingOffset + 2 * (ulong)queueSize;
    public static ulong AvailEventOffset(int queueSize) => UsedRingOffset + 8 * (ulong)queueSize;

    public static bool IsValidQueueSize(int size) => size > 0 && size <= MaxQueueSize && (size & (size - 1)) == 0;

    /// <summary>
    /// The EVENT_IDX rule: notify when the index moved past <paramref name="eventIdx"/> in the step
    /// from <paramref name="oldIdx"/> to <paramref name="newIdx"/>, all modulo 2^16.
    /// </summary>
    public static bool NeedsEvent(ushort eventIdx, ushort newIdx, ushort oldIdx)
        => (ushort)(newIdx - eventIdx - 1) < (ushort)(newIdx - oldIdx);
}
