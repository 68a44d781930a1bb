using System.Buffers;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// One decoded, validated message: header, payload bytes and the fds that came with it.
/// Its size and fd count already match <see cref="MessageRules"/>; field-level checks happen in
/// <see cref="ParsePayload{T}"/>. Dispose it when done: that returns the pooled payload buffer and
/// closes every fd that was not taken from <see cref="Fds"/>.
/// </summary>
/// <example>
/// <code>
/// using var msg = channel.Receive();
/// if (msg.FrontEndRequest == FrontEndRequest.SetVringKick)
/// {
///     var v = msg.ParsePayload&lt;VringFd&gt;();
///     SafeFileHandle? kick = v.NoFd ? null : msg.Fds.Take(0);
/// }
/// </code>
/// </example>
public sealed class VhostUserMessage : IDisposable
{
    private byte[]? _buffer;
    private readonly int _length;

    internal VhostUserMessage(VhostUserHeader header, VhostUserChannelKind channel, byte[]? pooledBuffer, int length, ReceivedFds fds)
    {
        Header = header;
        Channel = channel;
        _buffer = pooledBuffer;
        _length = length;
        Fds = fds;
    }

    public VhostUserHeader Header { get; }

    /// <summary>The socket the message came in on; decides how <see cref="RequestId"/> is read.</summary>
    public VhostUserChannelKind Channel { get; }

    /// <summary>The raw request id.</summary>
    public uint RequestId => Header.Request;

    /// <summary>The request id read as a front-end request (main socket).</summary>
    public FrontEndRequest FrontEndRequest => (FrontEndRequest)Header.Request;

    /// <summary>The request id read as a back-end request (back-end request channel).</summary>
    public BackEndRequest BackEndRequest => (BackEndRequest)Header.Request;

    public bool IsReply => Header.IsReply;

    /// <summary>The sender asked for a REPLY_ACK acknowledgement.</summary>
    public bool NeedReply => Header.NeedReply;

    /// <summary>False when the request id is not one this implementation knows (payload unchecked).</summary>
    public bool IsKnown => MessageRules.For(Channel, Header.Request, Header.IsReply).Known;

    /// <summary>The payload bytes (valid until <see cref="Dispose"/>).</summary>
    public ReadOnlySpan<byte> Payload
    {
        get
        {
            if (_length == 0) return default;
            ObjectDisposedException.ThrowIf(_buffer is null, this);
            return _buffer.AsSpan(0, _length);
        }
    }

    /// <summary>The fds that came with the message; take the ones you keep.</summary>
    public ReceivedFds Fds { get; }

    /// <summary>Parses and validates the payload as <typeparamref name="T"/>.</summary>
    /// <exception cref="VhostUserProtocolException">The payload does not fit <typeparamref name="T"/>.</exception>
    public T ParsePayload<T>() where T : struct, IVhostUserPayload<T> => T.Parse(Payload);

    /// <summary>Reads a u64 payload (features, counts, status, acknowledgements).</summary>
    public ulong ReadU64() => U64Payload.Parse(Payload).Value;

    public void Dispose()
    {
        Fds.Dispose();
        byte[]? buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
    }

    public override string ToString()
    {
        string name = Channel == VhostUserChannelKind.Main ? FrontEndRequest.ToString() : BackEndRequest.ToString();
        return $"{name}{(IsReply ? " reply" : "")} ({Header}, {Fds.Count} fds)";
    }
}
