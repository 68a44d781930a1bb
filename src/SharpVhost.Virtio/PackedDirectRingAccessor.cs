using System.Runtime.CompilerServices;

namespace SharpVhost.Virtio;

/// <summary>
/// Packed-ring metadata through pointers into our mapping of guest memory, validated once per
/// memory generation. The descriptor ring and the device area are written by the device, so they
/// must lie in writable regions (rule 1); each area must lie inside one region. Otherwise the bind
/// declines and the queue falls back to the checked accessor for that generation.
/// </summary>
public sealed unsafe class PackedDirectRingAccessor : PackedRingAccessor
{
    private byte* _desc, _driver, _device;
    private ulong _descGuest, _deviceGuest;

    protected override bool OnBind()
    {
        _desc = _driver = _device = null;
        var m = Memory;
        ulong ringSize = PackedRingLayout.DescriptorRingSize(QueueSize);
        if (!RingAreaCheck.TryMapDirect(m, Rings.Descriptors, ringSize, true, out nint desc, out ulong descGuest)) return false;
        if (!RingAreaCheck.TryMapDirect(m, Rings.Avail, PackedRingLayout.EventSuppressionSize, false, out nint driver, out _)) return false;
        if (!RingAreaCheck.TryMapDirect(m, Rings.Used, PackedRingLayout.EventSuppressionSize, true, out nint device, out ulong deviceGuest)) return false;
        _desc = (byte*)desc; _driver = (byte*)driver; _device = (byte*)device;
        _descGuest = descGuest; _deviceGuest = deviceGuest;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* Slot(int slot) => _desc + (ulong)slot * PackedRingLayout.DescriptorSize;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override ushort ReadFlags(int slot) => Volatile.Read(ref *(ushort*)(Slot(slot) + PackedRingLayout.DescriptorFlagsOffset));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override PackedDescriptor ReadDescriptor(int slot)
    {
        byte* p = Slot(slot);
        ushort flags = Volatile.Read(ref *(ushort*)(p + PackedRingLayout.DescriptorFlagsOffset));
        var d = Unsafe.ReadUnaligned<PackedDescriptor>(p);
        d.Flags = flags; // the value we ordered the other reads after
        return d;
    }

    public override void WriteUsed(int slot, ushort id, uint length)
    {
        byte* p = Slot(slot);
        *(uint*)(p + 8) = length;
        *(ushort*)(p + PackedRingLayout.DescriptorIdOffset) = id;
        if (Memory.Logging) LogDescriptorWrite(_descGuest + (ulong)slot * PackedRingLayout.DescriptorSize, (ulong)slot * PackedRingLayout.DescriptorSize, PackedRingLayout.DescriptorSize);
    }

    public override void PublishFlags(int slot, ushort flags)
    {
        Volatile.Write(ref *(ushort*)(Slot(slot) + PackedRingLayout.DescriptorFlagsOffset), flags);
        if (Memory.Logging)
        {
            ulong offset = (ulong)slot * PackedRingLayout.DescriptorSize + PackedRingLayout.DescriptorFlagsOffset;
            LogDescriptorWrite(_descGuest + offset, offset, 2);
        }
    }

    public override void WriteUsedAndPublish(int slot, ushort id, uint length, ushort flags)
    {
        byte* p = Slot(slot);
        *(uint*)(p + 8) = length;
        *(ushort*)(p + PackedRingLayout.DescriptorIdOffset) = id;
        Volatile.Write(ref *(ushort*)(p + PackedRingLayout.DescriptorFlagsOffset), flags);
        if (Memory.Logging) LogDescriptorWrite(_descGuest + (ulong)slot * PackedRingLayout.DescriptorSize, (ulong)slot * PackedRingLayout.DescriptorSize, PackedRingLayout.DescriptorSize);
    }

    public override uint ReadDriverEvent() => Volatile.Read(ref *(uint*)_driver);

    public override void WriteDeviceEvent(ushort offWrap, ushort flags)
    {
        Volatile.Write(ref *(uint*)_device, offWrap | ((uint)flags << 16));
        Memory.Log?.Mark(_deviceGuest, PackedRingLayout.EventSuppressionSize);
    }
}
