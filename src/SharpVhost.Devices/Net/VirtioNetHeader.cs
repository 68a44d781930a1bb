using System.Buffers.Binary;

namespace SharpVhost.Devices.Net;

/// <summary>
/// <c>struct virtio_net_hdr</c>: the offload metadata in front of every frame. num_buffers is set by the
/// device on receive (mergeable buffers) and ignored on transmit.
/// </summary>
public record struct VirtioNetHeader(byte Flags, byte GsoType, ushort HeaderLength, ushort GsoSize, ushort CsumStart, ushort CsumOffset, ushort NumBuffers = 0)
{
    public readonly bool NeedsCsum => (Flags & VirtioNet.HeaderNeedsCsum) != 0;
    public readonly bool IsGso => (GsoType & ~VirtioNet.GsoEcn) != VirtioNet.GsoNone;

    /// <summary>Reads a header of <paramref name="size"/> bytes (10 or 12).</summary>
    public static VirtioNetHeader Read(ReadOnlySpan<byte> b, int size) => new(
        b[0], b[1],
        BinaryPrimitives.ReadUInt16LittleEndian(b[2..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[6..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[8..]),
        size >= VirtioNet.HeaderSize ? BinaryPrimitives.ReadUInt16LittleEndian(b[10..]) : (ushort)0);

    /// <summary>Writes the first <paramref name="size"/> bytes (10 or 12) of the header.</summary>
    public readonly void Write(Span<byte> b, int size)
    {
        b[0] = Flags;
        b[1] = GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], HeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(b[6..], CsumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], CsumOffset);
        if (size >= VirtioNet.HeaderSize) BinaryPrimitives.WriteUInt16LittleEndian(b[10..], NumBuffers);
    }
}
