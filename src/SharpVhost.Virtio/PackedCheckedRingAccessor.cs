using System.Runtime.CompilerServices;

namespace SharpVhost.Virtio;

/// <summary>
/// Packed-ring metadata through translate, bounds-check and copy on every access: the
/// <c>copy_from_user</c> / <c>copy_to_user</c> analogue and the baseline for the direct accessor.
/// Works for rings that straddle regions. An access outside guest memory throws <see cref="VirtqueueException"/>.
/// </summary>
public sealed unsafe class PackedCheckedRingAccessor : PackedRingAccessor
{
    /// <summary>Each area must be guest memory from first to last byte, the written ones writable (vq_access_ok).</summary>
    protected override bool OnBind()
    {
        ulong ring = PackedRingLayout.DescriptorRingSize(QueueSize);
        const ulong events = PackedRingLayout.EventSuppressionSize;
        BindError = RingAreaCheck.Check(Memory, "descriptor ring", Rings.Descriptors, ring, true)
            ?? RingAreaCheck.Check(Memory, "driver area", Rings.Avail, events, false)
            ?? RingAreaCheck.Check(Memory, "device area", Rings.Used, events, true);
        return BindError is null;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* At(string area, ulong address, ulong size, bool write, out ulong guest)
    {
        if (!Memory.TryTranslateFrontend(address, size, write, out nint host, out guest)) throw OutOfMemory(area, address, write);
        return (byte*)host;
    }

    private ulong SlotAddress(int slot) => Rings.Descriptors + (ulong)slot * PackedRingLayout.DescriptorSize;

    public override ushort ReadFlags(int slot)
        => Volatile.Read(ref *(ushort*)At("descriptor ring", SlotAddress(slot) + PackedRingLayout.DescriptorFlagsOffset, 2, false, out _));

    public override PackedDescriptor ReadDescriptor(int slot)
    {
        byte* p = At("descriptor ring", SlotAddress(slot), PackedRingLayout.DescriptorSize, false, out _);
        ushort flags = Volatile.Read(ref *(ushort*)(p + PackedRingLayout.DescriptorFlagsOffset));
        return new PackedDescriptor(Unsafe.ReadUnaligned<ulong>(p), Unsafe.ReadUnaligned<uint>(p + 8), Unsafe.ReadUnaligned<ushort>(p + PackedRingLayout.DescriptorIdOffset), flags);
    }

    public override void WriteUsed(int slot, ushort id, uint length)
    {
        byte* p = At("descriptor ring", SlotAddress(slot) + 8, 6, true, out ulong guest);
        Unsafe.WriteUnaligned(p, length);
        Unsafe.WriteUnaligned(p + 4, id);
        LogDescriptorWrite(guest, (ulong)slot * PackedRingLayout.DescriptorSize + 8, 6);
    }

    public override void PublishFlags(int slot, ushort flags)
    {
        ulong offset = (ulong)slot * PackedRingLayout.DescriptorSize + PackedRingLayout.DescriptorFlagsOffset;
        Volatile.Write(ref *(ushort*)At("descriptor ring", Rings.Descriptors + offset, 2, true, out ulong guest), flags);
        LogDescriptorWrite(guest, offset, 2);
    }

    public override void WriteUsedAndPublish(int slot, ushort id, uint length, ushort flags)
    {
        byte* p = At("descriptor ring", SlotAddress(slot) + 8, 8, true, out ulong guest);
        Unsafe.WriteUnaligned(p, length);
        Unsafe.WriteUnaligned(p + 4, id);
        Volatile.Write(ref *(ushort*)(p + 6), flags);
        LogDescriptorWrite(guest, (ulong)slot * PackedRingLayout.DescriptorSize + 8, 8);
    }

    public override uint ReadDriverEvent() => Volatile.Read(ref *(uint*)At("driver area", Rings.Avail, 4, false, out _));

    public override void WriteDeviceEvent(ushort offWrap, ushort flags)
    {
        Volatile.Write(ref *(uint*)At("device area", Rings.Used, 4, true, out ulong guest), offWrap | ((uint)flags << 16));
        Memory.Log?.Mark(guest, PackedRingLayout.EventSuppressionSize);
    }
}
