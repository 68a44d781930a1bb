using System.Buffers;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// Pure encoding and validation of vhost-user messages, independent of any socket. The transport
/// uses it in two steps (<see cref="DecodeHeader"/> once 12 bytes are in, then
/// <see cref="ValidateBody"/> once the payload is in); <see cref="TryDecode"/> does both over a byte
/// buffer, for tests and fuzzing.
/// </summary>
public static class VhostUserCodec
{
    private const VhostUserHeaderFlags KnownFlags =
        VhostUserHeaderFlags.VersionMask | VhostUserHeaderFlags.Reply | VhostUserHeaderFlags.NeedReply;

    /// <summary>
    /// Reads and checks a header: version 1, no unknown flag bits, reply bit as expected for this
    /// direction, NEED_REPLY only on requests, size within <see cref="VhostUserLimits.MaxPayloadSize"/>.
    /// </summary>
    /// <exception cref="VhostUserProtocolException">The header is unusable; the stream cannot be trusted.</exception>
    public static VhostUserHeader DecodeHeader(ReadOnlySpan<byte> bytes, bool expectReply)
    {
        var header = VhostUserHeader.Read(bytes);
        if (header.Version != 1)
            throw new VhostUserProtocolException($"Unsupported protocol version {header.Version} ({header}).");
        if ((header.Flags & ~KnownFlags) != 0)
            throw new VhostUserProtocolException($"Unknown header flags 0x{(uint)(header.Flags & ~KnownFlags):x} ({header}).");
        if (header.Size > VhostUserLimits.MaxPayloadSize)
            throw new VhostUserProtocolException(
                $"Payload of {header.Size} bytes exceeds the {VhostUserLimits.MaxPayloadSize}-byte limit ({header}).");
        if (header.IsReply != expectReply)
            throw new VhostUserProtocolException(expectReply
                ? $"Expected a reply but got a request ({header})."
                : $"Expected a request but got a reply ({header}).");
        if (header.IsReply && header.NeedReply)
            throw new VhostUserProtocolException($"A reply cannot ask for a reply ({header}).");
        return header;
    }

    /// <summary>
    /// Checks a complete message against <see cref="MessageRules"/>: payload size and shape, fd count.
    /// </summary>
    /// <exception cref="VhostUserMessageRejectedException">The message breaks its rule.</exception>
    public static void ValidateBody(in VhostUserHeader header, VhostUserChannelKind channel, ReadOnlySpan<byte> payload, int fdCount)
    {
        if (payload.Length != header.Size)
            throw Reject(header, $"payload has {payload.Length} bytes but the header says {header.Size}");
        var rule = MessageRules.For(channel, header.Request, header.IsReply);

        try
        {
            switch (rule.Shape)
            {
                case PayloadShape.Empty when payload.Length != 0:
                    throw Reject(header, $"expects no payload, got {payload.Length} bytes");
                case PayloadShape.Fixed when payload.Length != rule.FixedSize:
                    throw Reject(header, $"expects a {rule.FixedSize}-byte payload, got {payload.Length}");
                case PayloadShape.MemoryTable:
                    _ = MemoryTable.Parse(payload);
                    break;
                case PayloadShape.Config:
                    _ = ConfigSpace.Parse(payload);
                    break;
                case PayloadShape.ConfigOrEmpty when payload.Length != 0:
                    _ = ConfigSpace.Parse(payload);
                    break;
                case PayloadShape.EmptyOrU64 when payload.Length is not (0 or 8):
                    throw Reject(header, $"expects no payload or a u64, got {payload.Length} bytes");
            }

            int expectedMin, expectedMax;
            switch (rule.Fds)
            {
                case FdRule.ExactlyOne: expectedMin = expectedMax = 1; break;
                case FdRule.ZeroOrOne: expectedMin = 0; expectedMax = 1; break;
                case FdRule.OnePerRegion: expectedMin = expectedMax = (int)MemoryTable.PeekRegionCount(payload); break;
                case FdRule.PerVringFdBit: expectedMin = expectedMax = VringFd.Parse(payload[..VringFd.Size]).ExpectedFdCount; break;
                default: expectedMin = expectedMax = 0; break;
            }
            if (fdCount < expectedMin || fdCount > expectedMax)
            {
                string expected = expectedMin == expectedMax ? $"{expectedMin}" : $"{expectedMin} to {expectedMax}";
                throw Reject(header, $"expects {expected} file descriptors, got {fdCount}");
            }
        }
        catch (VhostUserMessageRejectedException)
        {
            throw;
        }
        catch (VhostUserProtocolException e)
        {
            throw Reject(header, e.Message);
        }
    }

    /// <summary>
    /// Decodes one message from the front of <paramref name="bytes"/>. Returns false (and takes no
    /// fds) when more bytes are needed. On success the message owns <paramref name="fds"/>; on a
    /// <see cref="VhostUserProtocolException"/> they have been closed.
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> bytes, ReadOnlySpan<int> fds, VhostUserChannelKind channel, bool expectReply,
        out VhostUserMessage? message, out int consumed)
    {
        message = null;
        consumed = 0;
        if (bytes.Length < VhostUserHeader.WireSize) return false;
        VhostUserHeader header;
        try
        {
            header = DecodeHeader(bytes, expectReply);
        }
        catch
        {
            CloseAll(fds);
            throw;
        }
        int total = VhostUserHeader.WireSize + (int)header.Size;
        if (bytes.Length < total) return false;
        if (fds.Length > VhostUserLimits.MaxFds)
        {
            CloseAll(fds);
            throw Reject(header, $"carries {fds.Length} file descriptors, more than {VhostUserLimits.MaxFds}");
        }

        message = Create(header, channel, bytes.Slice(VhostUserHeader.WireSize, (int)header.Size), fds);
        consumed = total;
        return true;
    }

    /// <summary>
    /// Validates and wraps a received message; the result owns a pooled copy of the payload and the
    /// fds. On failure the fds are closed and <see cref="VhostUserMessageRejectedException"/> thrown.
    /// </summary>
    public static VhostUserMessage Create(in VhostUserHeader header, VhostUserChannelKind channel, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds)
    {
        var owned = new ReceivedFds(fds);
        try
        {
            ValidateBody(header, channel, payload, fds.Length);
        }
        catch
        {
            owned.Dispose();
            throw;
        }
        byte[]? buffer = null;
        if (payload.Length > 0)
        {
            buffer = ArrayPool<byte>.Shared.Rent(payload.Length);
            payload.CopyTo(buffer);
        }
        return new VhostUserMessage(header, channel, buffer, payload.Length, owned);
    }

    /// <summary>Writes header and payload into <paramref name="destination"/>; returns the bytes written.</summary>
    public static int Encode(Span<byte> destination, uint request, VhostUserHeaderFlags flags, ReadOnlySpan<byte> payload)
    {
        if (payload.Length > VhostUserLimits.MaxPayloadSize)
            throw new ArgumentException($"Payload of {payload.Length} bytes exceeds {VhostUserLimits.MaxPayloadSize}.", nameof(payload));
        var header = new VhostUserHeader(request, (flags & ~VhostUserHeaderFlags.VersionMask) | VhostUserHeaderFlags.Version1, (uint)payload.Length);
        header.Write(destination);
        payload.CopyTo(destination[VhostUserHeader.WireSize..]);
        return VhostUserHeader.WireSize + payload.Length;
    }

    private static VhostUserMessageRejectedException Reject(in VhostUserHeader header, string why) =>
        new(header, $"Rejected message ({header}): {why}.");

    private static void CloseAll(ReadOnlySpan<int> fds)
    {
        foreach (int fd in fds) Interop.UnixSockets.CloseFd(fd);
    }
}
