namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// A message payload with a fixed wire layout (native byte order, which is little endian on every
/// supported target). <see cref="Parse"/> checks the size and every field it can check on its own
/// and throws <see cref="VhostUserProtocolException"/> otherwise; <see cref="Write"/> produces
/// exactly <see cref="WireSize"/> bytes.
/// </summary>
public interface IVhostUserPayload<TSelf> where TSelf : struct, IVhostUserPayload<TSelf>
{
    /// <summary>Decodes and validates a payload.</summary>
    static abstract TSelf Parse(ReadOnlySpan<byte> payload);

    /// <summary>Number of bytes <see cref="Write"/> produces.</summary>
    int WireSize { get; }

    /// <summary>Encodes into the first <see cref="WireSize"/> bytes of <paramref name="destination"/>.</summary>
    void Write(Span<byte> destination);
}

/// <summary>Size checks shared by the payload parsers.</summary>
internal static class PayloadCheck
{
    public static void Size(ReadOnlySpan<byte> payload, int expected, string what)
    {
        if (payload.Length != expected)
            throw new VhostUserProtocolException($"{what} payload must be {expected} bytes, got {payload.Length}.");
    }

    public static void Room(Span<byte> destination, int needed, string what)
    {
        if (destination.Length < needed)
            throw new ArgumentException($"{what} needs {needed} bytes, destination has {destination.Length}.", nameof(destination));
    }
}
