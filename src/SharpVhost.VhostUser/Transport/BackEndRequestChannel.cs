using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.VhostUser.Transport;

/// <summary>
/// The back-end's side of the back-end request channel (the socket received with
/// SET_BACKEND_REQ_FD): send IOTLB misses, config-change notices and host notifiers to the
/// front-end. Thread-safe: workers may call it concurrently; one request/acknowledgement pair is in
/// flight at a time.
/// </summary>
public sealed class BackEndRequestChannel : IDisposable
{
    /// <param name="socket">The socket taken from SET_BACKEND_REQ_FD's fds; the channel owns it.</param>
    /// <param name="replyAck">REPLY_ACK was negotiated, so the front-end answers NEED_REPLY.</param>
    public BackEndRequestChannel(Socket socket, bool replyAck, ILogger? logger = null)
    {
        Channel = new VhostUserChannel(socket, VhostUserRole.BackEnd, VhostUserChannelKind.BackendRequests, logger);
        ReplyAck = replyAck;
    }

    public VhostUserChannel Channel { get; }
    public bool ReplyAck { get; }

    /// <summary>
    /// Sends a request. With <paramref name="waitForAck"/> and REPLY_ACK negotiated, blocks until the
    /// front-end acknowledges it and throws <see cref="VhostUserRequestFailedException"/> on failure.
    /// </summary>
    public void Send(BackEndRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default, bool waitForAck = false) =>
        Channel.Transact((uint)request, payload, fds, expectReply: false, needAck: waitForAck && ReplyAck);

    /// <summary>Typed <see cref="Send(BackEndRequest, ReadOnlySpan{byte}, ReadOnlySpan{int}, bool)"/>.</summary>
    public void Send<T>(BackEndRequest request, in T payload, ReadOnlySpan<int> fds = default, bool waitForAck = false)
        where T : struct, IVhostUserPayload<T>
    {
        Span<byte> bytes = stackalloc byte[payload.WireSize];
        payload.Write(bytes);
        Send(request, bytes, fds, waitForAck);
    }

    /// <summary>Reports that no IOTLB entry covers <paramref name="iova"/> with <paramref name="permission"/>.
    /// With <paramref name="waitForAck"/>, returns once the front-end has sent the update (or refused).</summary>
    public void SendIotlbMiss(ulong iova, IotlbPermission permission, bool waitForAck = true) =>
        Send(BackEndRequest.IotlbMsg, new IotlbMessage(iova, 0, 0, permission, IotlbMessageType.Miss), default, waitForAck);

    /// <summary>Tells the front-end that the device config space changed.</summary>
    public void SendConfigChanged(bool waitForAck = false) =>
        Send(BackEndRequest.ConfigChangeMsg, ReadOnlySpan<byte>.Empty, default, waitForAck);

    public void Dispose() => Channel.Dispose();
}
