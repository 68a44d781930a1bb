using System.Runtime.CompilerServices;

namespace SharpVhost.Virtio;

/// <summary>
/// Ring metadata through translate, bounds-check and copy on every access: the <c>copy_from_user</c> /
/// <c>copy_to_user</c> analogue and the baseline the direct accessor is measured against. Works for
/// rings that straddle regions. An access outside guest memory throws <see cref="VirtqueueException"/>.
/// </summary>
public sealed unsafe class CheckedRingAccessor : RingAccessor
{
    /// <summary>Why the last bind failed (which area is not guest memory), or null.</summary>
    internal string? BindError { get; private set; }

    /// <summary>
    /// Each area must be guest memory from its first to its last byte (it may span adjacent regions),
    /// and the used ring writable: the vq_access_ok analogue, so a ring that is only partly inside
    /// guest memory is refused at once rather than when the driver first reaches the bad slot.
    /// </summary>
    protected override bool OnBind()
    {
        int n = QueueSize;
        BindError = RingAreaCheck.Check(Memory, "descriptor table", Rings.Descriptors, SplitRingLayout.DescriptorTableSize(n), false)
            ?? RingAreaCheck.Check(Memory, "avail ring", Rings.Avail, SplitRingLayout.AvailSize(n), false)
            ?? RingAreaCheck.Check(Memory, "used ring", Rings.Used, SplitRingLayout.UsedSize(n), true);
        return BindError is null;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* At(string area, ulong areaBase, ulong offset, ulong size, bool write)
    {
        if (!Memory.TryTranslateFrontend(areaBase + offset, size, write, out nint host, out _)) throw OutOfMemory(area, offset);
        return (byte*)host;
    }

    public override ushort ReadAvailIndex() => Volatile.Read(ref *(ushort*)At("avail ring", Rings.Avail, SplitRingLayout.AvailIdxOffset, 2, false));

    public override ushort ReadAvailFlags() => Volatile.Read(ref *(ushort*)At("avail ring", Rings.Avail, SplitRingLayout.AvailFlagsOffset, 2, false));

    public override ushort ReadAvailEntry(int slot) => *(ushort*)At("avail ring", Rings.Avail, SplitRingLayout.AvailRingOffset + 2 * (ulong)slot, 2, false);

    public override ushort ReadUsedEvent() => Volatile.Read(ref *(ushort*)At("avail ring", Rings.Avail, SplitRingLayout.UsedEventOffset(QueueSize), 2, false));

    public override ushort ReadUsedIndex() => Volatile.Read(ref *(ushort*)At("used ring", Rings.Used, SplitRingLayout.UsedIdxOffset, 2, false));

    public override VirtqDescriptor ReadDescriptor(int index)
        => Unsafe.ReadUnaligned<VirtqDescriptor>(At("descriptor table", Rings.Descriptors, (ulong)index * SplitRingLayout.DescriptorSize, SplitRingLayout.DescriptorSize, false));

    public override void WriteUsedElement(int slot, uint id, uint length)
    {
        ulong offset = SplitRingLayout.UsedRingOffset + (ulong)slot * SplitRingLayout.UsedElementSize;
        Unsafe.WriteUnaligned(At("used ring", Rings.Used, offset, 8, true), id | ((ulong)length << 32));
        LogUsedWrite(offset, SplitRingLayout.UsedElementSize);
    }

    public override void PublishUsedIndex(ushort index)
    {
        Volatile.Write(ref *(ushort*)At("used ring", Rings.Used, SplitRingLayout.UsedIdxOffset, 2, true), index);
        // logged after the write: see DirectRingAccessor.PublishUsedIndex
        LogUsedWrite(SplitRingLayout.UsedIdxOffset, 2);
    }

    public override void WriteUsedFlags(ushort flags)
    {
        Volatile.Write(ref *(ushort*)At("used ring", Rings.Used, SplitRingLayout.UsedFlagsOffset, 2, true), flags);
        LogUsedWrite(SplitRingLayout.UsedFlagsOffset, 2);
    }

    public override void WriteAvailEvent(ushort index)
    {
        ulong offset = SplitRingLayout.AvailEventOffset(QueueSize);
        Volatile.Write(ref *(ushort*)At("used ring", Rings.Used, offset, 2, true), index);
        LogUsedWrite(offset, 2);
    }
}
