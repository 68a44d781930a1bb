using System.Buffers;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.VhostUser.Transport;

/// <summary>
/// One end of a vhost-user socket: receives whole messages with their fds, sends messages with
/// optional fds. Which messages are requests and which are replies follows from the local role and
/// the channel kind: a back-end on the main socket receives requests and sends replies; a front-end
/// there sends requests and receives replies; on the back-end request channel it is the other way round.
/// </summary>
/// <remarks>
/// <see cref="Receive"/> blocks; call it from one dedicated control thread. Sends are serialized
/// by a lock, so a worker may send on the back-end request channel while the control thread sends
/// replies on the main socket.
/// <para>
/// A back-end's control loop:
/// <code>
/// using var channel = new VhostUserChannel(socket, VhostUserRole.BackEnd);
/// while (channel.Receive() is { } msg)
/// {
///     using (msg)
///     {
///         switch (msg.FrontEndRequest)
///         {
///             case FrontEndRequest.GetFeatures: channel.SendReplyU64(msg, features); break;
///             case FrontEndRequest.SetVringNum: var s = msg.ParsePayload&lt;VringState&gt;(); ...; channel.Acknowledge(msg, true); break;
///         }
///     }
/// }
/// </code>
/// </para>
/// </remarks>
public sealed class VhostUserChannel : IDisposable
{
    private readonly Socket _socket;
    private readonly ILogger _logger;
    private readonly bool _receivesReplies;
    private readonly byte[] _headerBuffer = new byte[VhostUserHeader.WireSize];
    private readonly int[] _fdScratch = new int[VhostUserLimits.MaxFds];
    private readonly byte[] _sendBuffer = new byte[VhostUserHeader.WireSize + VhostUserLimits.MaxPayloadSize];
    private readonly Lock _sendLock = new();
    private readonly Lock _receiveLock = new();

    /// <param name="socket">A connected Unix stream socket; the channel owns it.</param>
    /// <param name="localRole">Which end of the protocol this process is.</param>
    /// <param name="kind">The main socket or the back-end request channel.</param>
    /// <param name="logger">Gets one trace line per message.</param>
    public VhostUserChannel(Socket socket, VhostUserRole localRole, VhostUserChannelKind kind = VhostUserChannelKind.Main, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(socket);
        _socket = socket;
        LocalRole = localRole;
        Kind = kind;
        _logger = logger ?? NullLogger.Instance;
        // The side that issues requests on this socket is the side that receives replies.
        _receivesReplies = (kind == VhostUserChannelKind.Main) == (localRole == VhostUserRole.FrontEnd);
    }

    public VhostUserRole LocalRole { get; }
    public VhostUserChannelKind Kind { get; }
    public Socket Socket => _socket;

    /// <summary>True when messages arriving here are replies (this end issues the requests).</summary>
    public bool ReceivesReplies => _receivesReplies;

    /// <summary>
    /// Blocks until one whole message has arrived and checks it against <see cref="MessageRules"/>.
    /// Returns null when the peer closed the connection between messages. The caller disposes the result.
    /// </summary>
    /// <exception cref="VhostUserMessageRejectedException">A complete message broke its rules; the
    /// stream is still in step (reply with an error if <see cref="VhostUserHeader.NeedReply"/>, or drop).</exception>
    /// <exception cref="VhostUserProtocolException">Truncated or unusable message; drop the connection.</exception>
    /// <exception cref="SocketException">The socket failed.</exception>
    public VhostUserMessage? Receive()
    {
        lock (_receiveLock)
        {
            int fdCount = 0;
            bool fdOverflow = false;
            byte[]? payload = null;
            try
            {
                int got = ReadFully(_headerBuffer, ref fdCount, ref fdOverflow);
                if (got == 0 && fdCount == 0 && !fdOverflow) return null;
                if (got < VhostUserHeader.WireSize)
                    throw new VhostUserProtocolException($"Connection closed inside a message header ({got} of {VhostUserHeader.WireSize} bytes).");

                var header = VhostUserCodec.DecodeHeader(_headerBuffer, expectReply: _receivesReplies);
                int size = (int)header.Size;
                payload = ArrayPool<byte>.Shared.Rent(Math.Max(size, 1));
                int payloadGot = ReadFully(payload.AsSpan(0, size), ref fdCount, ref fdOverflow);
                if (payloadGot < size)
                    throw new VhostUserProtocolException($"Connection closed inside a message payload ({payloadGot} of {size} bytes; {header}).");
                if (fdOverflow)
                    throw new VhostUserMessageRejectedException(header,
                        $"Rejected message ({header}): carries more than {VhostUserLimits.MaxFds} file descriptors.");

                // Create takes the fds (closing them itself if the message is rejected).
                int taken = fdCount;
                fdCount = 0;
                var message = VhostUserCodec.Create(header, Kind, payload.AsSpan(0, size), _fdScratch.AsSpan(0, taken));
                if (_logger.IsEnabled(LogLevel.Trace)) _logger.LogTrace("vhost-user {Kind} <- {Message}", Kind, message);
                return message;
            }
            finally
            {
                for (int i = 0; i < fdCount; i++) UnixSockets.CloseFd(_fdScratch[i]);
                if (payload is not null) ArrayPool<byte>.Shared.Return(payload);
            }
        }
    }

    /// <summary>Sends one message. <paramref name="fds"/> stay owned by the caller (the kernel duplicates them).</summary>
    public void Send(uint request, VhostUserHeaderFlags flags, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        if (fds.Length > VhostUserLimits.MaxFds)
            throw new ArgumentException($"At most {VhostUserLimits.MaxFds} file descriptors per message.", nameof(fds));
        lock (_sendLock)
        {
            int length = VhostUserCodec.Encode(_sendBuffer, request, flags, payload);
            UnixSockets.SendWithFds(_socket, _sendBuffer.AsSpan(0, length), fds);
        }
        if (_logger.IsEnabled(LogLevel.Trace))
            _logger.LogTrace("vhost-user {Kind} -> request {Request} flags {Flags} size {Size} fds {Fds}", Kind, request, flags, payload.Length, fds.Length);
    }

    /// <summary>Sends a message whose payload is a typed struct.</summary>
    public void Send<T>(uint request, VhostUserHeaderFlags flags, in T payload, ReadOnlySpan<int> fds = default)
        where T : struct, IVhostUserPayload<T>
    {
        Span<byte> bytes = stackalloc byte[payload.WireSize];
        payload.Write(bytes);
        Send(request, flags, bytes, fds);
    }

    /// <summary>Sends the reply to <paramref name="request"/> (same id, reply bit, version 1).</summary>
    public void SendReply(VhostUserMessage request, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.IsReply) throw new ArgumentException("Cannot reply to a reply.", nameof(request));
        Send(request.RequestId, VhostUserHeaderFlags.Reply, payload, fds);
    }

    /// <summary>Sends a typed reply to <paramref name="request"/>.</summary>
    public void SendReply<T>(VhostUserMessage request, in T payload, ReadOnlySpan<int> fds = default)
        where T : struct, IVhostUserPayload<T>
    {
        Span<byte> bytes = stackalloc byte[payload.WireSize];
        payload.Write(bytes);
        SendReply(request, bytes, fds);
    }

    /// <summary>Sends a u64 reply (GET_FEATURES, GET_QUEUE_NUM, ...).</summary>
    public void SendReplyU64(VhostUserMessage request, ulong value) => SendReply(request, new U64Payload(value));

    /// <summary>
    /// Finishes a request that has no explicit reply: when the sender set NEED_REPLY (REPLY_ACK),
    /// sends the u64 status (0 on success, 1 on failure). Returns whether a reply was sent.
    /// </summary>
    public bool Acknowledge(VhostUserMessage request, bool success) =>
        Acknowledge(request.Header, success);

    /// <summary>As <see cref="Acknowledge(VhostUserMessage, bool)"/>, for a header (e.g. from
    /// <see cref="VhostUserMessageRejectedException.Header"/>).</summary>
    public bool Acknowledge(in VhostUserHeader request, bool success)
    {
        if (!request.NeedReply || request.IsReply) return false;
        // Requests with a reply of their own are answered by that reply, never by an extra status.
        if (Kind == VhostUserChannelKind.Main && MessageRules.HasExplicitReply((FrontEndRequest)request.Request)) return false;
        Span<byte> bytes = stackalloc byte[U64Payload.Size];
        new U64Payload(success ? 0UL : 1UL).Write(bytes);
        Send(request.Request, VhostUserHeaderFlags.Reply, bytes);
        return true;
    }

    /// <summary>
    /// Sends a request and, when <paramref name="expectReply"/> is true, waits for the matching reply
    /// (same id, reply bit, shape per <see cref="MessageRules"/>). With <paramref name="needAck"/> the
    /// request carries NEED_REPLY; a reply is then awaited even without <paramref name="expectReply"/>,
    /// and a non-zero acknowledgement throws. Returns the reply (caller disposes) or null.
    /// Not meant for concurrent use with <see cref="Receive"/> on the same channel.
    /// </summary>
    /// <exception cref="VhostUserRequestFailedException">The peer acknowledged with a non-zero status.</exception>
    /// <exception cref="VhostUserProtocolException">No reply, or a reply that does not match.</exception>
    public VhostUserMessage? Transact(uint request, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds, bool expectReply, bool needAck)
    {
        if (!_receivesReplies)
            throw new InvalidOperationException($"A {LocalRole} does not send requests on the {Kind} channel.");
        lock (_receiveLock)
        {
            Send(request, needAck ? VhostUserHeaderFlags.NeedReply : VhostUserHeaderFlags.None, payload, fds);
            if (!expectReply && !needAck) return null;

            var reply = Receive() ?? throw new VhostUserProtocolException($"Peer closed the connection instead of replying to request {request}.");
            if (reply.RequestId != request)
            {
                var got = reply.Header;
                reply.Dispose();
                throw new VhostUserProtocolException($"Reply to request {request} carries request id {got.Request}.");
            }
            if (expectReply) return reply;

            // Acknowledgement only: decode the status and hand back nothing.
            using (reply)
            {
                ulong status = reply.ReadU64();
                if (status != 0)
                    throw new VhostUserRequestFailedException($"Peer refused request {request} (status {status}).", status);
            }
            return null;
        }
    }

    /// <summary>
    /// Wakes a thread blocked in <see cref="Receive"/> (it then returns null) and stops further
    /// traffic. Use this to end a session from another thread: disposing alone does not interrupt a
    /// blocked receive, because the descriptor stays referenced while the call runs.
    /// </summary>
    public void Shutdown()
    {
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
    }

    public void Dispose() => _socket.Dispose();

    // Reads until the span is full or the peer closes; collects fds into _fdScratch. Returns bytes read.
    private int ReadFully(Span<byte> destination, ref int fdCount, ref bool fdOverflow)
    {
        int got = 0;
        while (got < destination.Length)
        {
            int n;
            int received;
            try
            {
                n = UnixSockets.ReceiveWithFds(_socket, destination[got..], _fdScratch.AsSpan(fdCount), out received);
            }
            catch (FileDescriptorOverflowException e)
            {
                // The data still arrived; keep reading so the stream stays in step, reject later.
                fdOverflow = true;
                n = e.BytesReceived;
                received = 0;
            }
            fdCount += received;
            if (n == 0) break;
            got += n;
        }
        return got;
    }
}
