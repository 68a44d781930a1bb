using System.Runtime.InteropServices;

namespace SharpVhost.Virtio;

/// <summary>A split-ring descriptor as the driver writes it: <c>{le64 addr; le32 len; le16 flags; le16 next}</c>.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1, Size = 16)]
public struct VirtqDescriptor
{
    public const ushort FlagNext = 1;
    public const ushort FlagWrite = 2;
    public const ushort FlagIndirect = 4;

    public ulong Address;
    public uint Length;
    public ushort Flags;
    public ushort Next;

    public VirtqDescriptor(ulong address, uint length, ushort flags, ushort next)
    {
        Address = address; Length = length; Flags = flags; Next = next;
    }

    public readonly bool HasNext => (Flags & FlagNext) != 0;
    public readonly bool IsDeviceWritable => (Flags & FlagWrite) != 0;
    public readonly bool IsIndirect => (Flags & FlagIndirect) != 0;
}
