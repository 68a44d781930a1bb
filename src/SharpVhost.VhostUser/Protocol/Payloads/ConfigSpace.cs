using System.Buffers.Binary;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>Flags of <see cref="ConfigSpace"/>.</summary>
public enum ConfigSpaceFlags : uint
{
    /// <summary>An ordinary access to writable fields.</summary>
    Writable = 0,
    /// <summary>Live migration: read-only fields may be written too.</summary>
    Migration = 1,
}

/// <summary>
/// GET_CONFIG / SET_CONFIG: <c>{u32 offset; u32 size; u32 flags; u8 data[size]}</c>. For GET_CONFIG
/// the request carries <c>size</c> placeholder bytes and the reply must have the same size; an empty
/// reply payload means failure.
/// </summary>
public readonly record struct ConfigSpace(uint Offset, ConfigSpaceFlags Flags, byte[] Data) : IVhostUserPayload<ConfigSpace>
{
    public const int HeaderSize = 12;
    public int WireSize => HeaderSize + Data.Length;

    public static ConfigSpace Parse(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < HeaderSize)
            throw new VhostUserProtocolException($"Config payload must be at least {HeaderSize} bytes, got {payload.Length}.");
        uint offset = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(payload[8..]);
        if (size > VhostUserLimits.MaxConfigSize)
            throw new VhostUserProtocolException($"Config access of {size} bytes exceeds {VhostUserLimits.MaxConfigSize}.");
        if (payload.Length != HeaderSize + size)
            throw new VhostUserProtocolException($"Config payload says {size} data bytes but carries {payload.Length - HeaderSize}.");
        if (flags > (uint)ConfigSpaceFlags.Migration)
            throw new VhostUserProtocolException($"Config flags {flags} unknown.");
        return new ConfigSpace(offset, (ConfigSpaceFlags)flags, payload[HeaderSize..].ToArray());
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, WireSize, "config");
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Offset);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], (uint)Data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], (uint)Flags);
        Data.CopyTo(destination[HeaderSize..]);
    }

    public bool Equals(ConfigSpace other) =>
        Offset == other.Offset && Flags == other.Flags && Data.AsSpan().SequenceEqual(other.Data);
    public override int GetHashCode() => HashCode.Combine(Offset, Flags, Data.Length);
}
