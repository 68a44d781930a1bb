using System.Runtime.InteropServices;

namespace SharpVhost.Virtio;

/// <summary>
/// Sizes, flags and index arithmetic of the packed ring (virtio 1.2, 2.8): one descriptor ring that
/// both sides write, plus two 4-byte event suppression areas. vhost-user passes the three areas in
/// SET_VRING_ADDR's fields: descriptor = descriptor ring, avail = driver area (driver event
/// suppression, read by the device), used = device area (device event suppression, written by the device).
/// </summary>
public static class PackedRingLayout
{
    /// <summary>The index is 15 bits; bit 15 of an event offset carries the wrap counter.</summary>
    public const int MaxQueueSize = 32768;
    public const int DescriptorSize = 16;
    public const int EventSuppressionSize = 4;

    // descriptor flags (NEXT, WRITE and INDIRECT are shared with the split ring)
    public const ushort FlagAvail = 1 << 7;
    public const ushort FlagUsed = 1 << 15;

    // event suppression flags
    public const ushort EventEnable = 0;
    public const ushort EventDisable = 1;
    /// <summary>Only with EVENT_IDX: notify when the descriptor at off_wrap is made available / used.</summary>
    public const ushort EventDescriptor = 2;

    public const ushort WrapBit = 1 << 15;

    public const ulong DescriptorIdOffset = 12, DescriptorFlagsOffset = 14;

    /// <summary>Any size from 1 to 2^15: unlike the split ring, packed rings need no power of two.</summary>
    public static bool IsValidQueueSize(int size) => size > 0 && size <= MaxQueueSize;

    public static ulong DescriptorRingSize(int queueSize) => (ulong)queueSize * DescriptorSize;

    /// <summary>The flags a driver writes to make a descriptor available in pass <paramref name="wrap"/>.</summary>
    public static ushort AvailableFlags(bool wrap) => wrap ? FlagAvail : FlagUsed;

    /// <summary>The flags a device writes to mark a descriptor used in pass <paramref name="wrap"/>.</summary>
    public static ushort UsedFlags(bool wrap) => wrap ? (ushort)(FlagAvail | FlagUsed) : (ushort)0;

    /// <summary>Available in the driver's pass <paramref name="wrap"/>: AVAIL matches it and USED does not.</summary>
    public static bool IsAvailable(ushort flags, bool wrap)
        => ((flags & FlagAvail) != 0) == wrap && ((flags & FlagUsed) != 0) != wrap;

    /// <summary>Used in the device's pass <paramref name="wrap"/>: AVAIL and USED both match it.</summary>
    public static bool IsUsed(ushort flags, bool wrap)
        => ((flags & FlagAvail) != 0) == wrap && ((flags & FlagUsed) != 0) == wrap;

    /// <summary>
    /// A ring position and wrap counter as one number in [0, 2N): positions then count up modulo 2N,
    /// which makes "did the other side's event position fall inside the range we just wrote" a
    /// modular comparison like the split ring's, for any queue size (not only powers of two).
    /// </summary>
    public static int Extended(int index, bool wrap, int queueSize) => wrap ? index : index + queueSize;

    /// <summary>
    /// The packed form of the EVENT_IDX rule: notify if the event position (offset and wrap in
    /// <paramref name="offWrap"/>) lies in [<paramref name="oldPosition"/>, <paramref name="newPosition"/>)
    /// of the extended ring. Positions from <see cref="Extended"/>.
    /// </summary>
    public static bool NeedsEvent(ushort offWrap, int newPosition, int oldPosition, int queueSize)
    {
        int offset = offWrap & 0x7fff;
        if (offset >= queueSize) return true; // nonsense from the other side: err towards notifying
        int eventPosition = Extended(offset, (offWrap & WrapBit) != 0, queueSize);
        int span = 2 * queueSize;
        int moved = Mod(newPosition - oldPosition, span);
        int behind = Mod(newPosition - eventPosition - 1, span);
        return behind < moved;
    }

    private static int Mod(int value, int modulus) => ((value % modulus) + modulus) % modulus;
}

/// <summary>A packed-ring descriptor: <c>{le64 addr; le32 len; le16 id; le16 flags}</c>.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 16)]
public struct PackedDescriptor
{
    public ulong Address;
    public uint Length;
    public ushort Id;
    public ushort Flags;

    public PackedDescriptor(ulong address, uint length, ushort id, ushort flags)
    {
        Address = address; Length = length; Id = id; Flags = flags;
    }

    public readonly bool HasNext => (Flags & VirtqDescriptor.FlagNext) != 0;
    public readonly bool IsDeviceWritable => (Flags & VirtqDescriptor.FlagWrite) != 0;
    public readonly bool IsIndirect => (Flags & VirtqDescriptor.FlagIndirect) != 0;
}

/// <summary>Guest-physical placement of a packed ring's three areas, back to back with the spec's alignment.</summary>
public readonly record struct PackedRingPlacement(ulong Descriptors, ulong DriverArea, ulong DeviceArea, ulong End)
{
    public static PackedRingPlacement At(ulong baseAddress, int queueSize)
    {
        ulong desc = (baseAddress + 15) & ~15ul;
        ulong driver = desc + PackedRingLayout.DescriptorRingSize(queueSize); // 16-aligned, so 4-aligned
        ulong device = driver + PackedRingLayout.EventSuppressionSize;
        return new PackedRingPlacement(desc, driver, device, device + PackedRingLayout.EventSuppressionSize);
    }
}
