using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// The 12-byte header in front of every message: <c>{u32 request; u32 flags; u32 size}</c>.
/// <see cref="Request"/> is a <see cref="FrontEndRequest"/> on the main socket and a
/// <see cref="BackEndRequest"/> on the back-end request channel.
/// </summary>
public readonly record struct VhostUserHeader(uint Request, VhostUserHeaderFlags Flags, uint Size)
{
    public const int WireSize = VhostUserLimits.HeaderSize;

    /// <summary>Version bits of <see cref="Flags"/> (1 is the only valid value).</summary>
    public uint Version => (uint)(Flags & VhostUserHeaderFlags.VersionMask);
    public bool IsReply => (Flags & VhostUserHeaderFlags.Reply) != 0;
    public bool NeedReply => (Flags & VhostUserHeaderFlags.NeedReply) != 0;

    /// <summary>Reads the three fields without validating them (see <see cref="VhostUserCodec.DecodeHeader"/>).</summary>
    public static VhostUserHeader Read(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < WireSize)
            throw new VhostUserProtocolException($"Truncated header: {bytes.Length} of {WireSize} bytes.");
        return new VhostUserHeader(
            BinaryPrimitives.ReadUInt32LittleEndian(bytes),
            (VhostUserHeaderFlags)BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]));
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, WireSize, "header");
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Request);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], (uint)Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Size);
    }

    public override string ToString() =>
        $"request {Request} flags 0x{(uint)Flags:x} size {Size}";
}
