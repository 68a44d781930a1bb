using System.Runtime.CompilerServices;

namespace SharpVhost.Virtio;

/// <summary>
/// Ring metadata through pointers into our own mapping of guest memory, validated once per memory
/// generation: each area must lie inside one region, and the used ring inside a writable one (rule 1:
/// never write through a mapping that was not writable). If either fails, <see cref="OnBind"/>
/// declines and the queue falls back to the checked accessor for that generation.
/// </summary>
public sealed unsafe class DirectRingAccessor : RingAccessor
{
    private byte* _desc, _avail, _used;

    protected override bool OnBind()
    {
        _desc = _avail = _used = null;
        var m = Memory;
        int n = QueueSize;
        if (!RingAreaCheck.TryMapDirect(m, Rings.Descriptors, SplitRingLayout.DescriptorTableSize(n), false, out nint desc, out _)) return false;
        if (!RingAreaCheck.TryMapDirect(m, Rings.Avail, SplitRingLayout.AvailSize(n), false, out nint avail, out _)) return false;
        if (!RingAreaCheck.TryMapDirect(m, Rings.Used, SplitRingLayout.UsedSize(n), true, out nint used, out _)) return false;
        _desc = (byte*)desc; _avail = (byte*)avail; _used = (byte*)used;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override ushort ReadAvailIndex() => Volatile.Read(ref *(ushort*)(_avail + SplitRingLayout.AvailIdxOffset));

    public override ushort ReadAvailFlags() => Volatile.Read(ref *(ushort*)(_avail + SplitRingLayout.AvailFlagsOffset));

    public override ushort ReadAvailEntry(int slot) => *(ushort*)(_avail + SplitRingLayout.AvailRingOffset + 2 * (ulong)slot);

    public override ushort ReadUsedEvent() => Volatile.Read(ref *(ushort*)(_avail + SplitRingLayout.UsedEventOffset(QueueSize)));

    public override ushort ReadUsedIndex() => Volatile.Read(ref *(ushort*)(_used + SplitRingLayout.UsedIdxOffset));

    public override VirtqDescriptor ReadDescriptor(int index) => Unsafe.ReadUnaligned<VirtqDescriptor>(_desc + (ulong)index * SplitRingLayout.DescriptorSize);

    public override void WriteUsedElement(int slot, uint id, uint length)
    {
        ulong offset = SplitRingLayout.UsedRingOffset + (ulong)slot * SplitRingLayout.UsedElementSize;
        *(ulong*)(_used + offset) = id | ((ulong)length << 32);
        LogUsedWrite(offset, SplitRingLayout.UsedElementSize);
    }

    public override void PublishUsedIndex(ushort index)
    {
        // Log after the write, like every other log: a frontend that clears the bit between a log and
        // its write would copy the page before the write and never see it dirty again.
        Volatile.Write(ref *(ushort*)(_used + SplitRingLayout.UsedIdxOffset), index);
        LogUsedWrite(SplitRingLayout.UsedIdxOffset, 2);
    }

    public override void WriteUsedFlags(ushort flags)
    {
        Volatile.Write(ref *(ushort*)(_used + SplitRingLayout.UsedFlagsOffset), flags);
        LogUsedWrite(SplitRingLayout.UsedFlagsOffset, 2);
    }

    public override void WriteAvailEvent(ushort index)
    {
        ulong offset = SplitRingLayout.AvailEventOffset(QueueSize);
        Volatile.Write(ref *(ushort*)(_used + offset), index);
        LogUsedWrite(offset, 2);
    }
}
