using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.VhostUser.Transport;

/// <summary>
/// The front-end's side of the main socket: typed request helpers that wait for and check replies.
/// Requests with an explicit reply (GET_FEATURES, GET_VRING_BASE, GET_CONFIG, ...) always wait;
/// others wait for an acknowledgement only once <see cref="ReplyAck"/> is on (REPLY_ACK negotiated).
/// </summary>
/// <example>
/// <code>
/// using var fe = new FrontEndConnection(socket);
/// ulong features = fe.GetU64(FrontEndRequest.GetFeatures);
/// fe.SetU64(FrontEndRequest.SetFeatures, features &amp; wanted);
/// var protocol = (VhostUserProtocolFeatures)fe.GetU64(FrontEndRequest.GetProtocolFeatures);
/// fe.SetU64(FrontEndRequest.SetProtocolFeatures, (ulong)(protocol &amp; mine));
/// fe.ReplyAck = (protocol &amp; mine).HasFlag(VhostUserProtocolFeatures.ReplyAck);
/// fe.Send(FrontEndRequest.SetMemTable, new MemoryTable([region]), [memfd]);
/// fe.Send(FrontEndRequest.SetVringKick, new VringFd(0, NoFd: false), [kickEventFd]);
/// </code>
/// </example>
public sealed class FrontEndConnection : IDisposable
{
    /// <param name="socket">A socket connected to the back-end; the connection owns it.</param>
    public FrontEndConnection(Socket socket, ILogger? logger = null)
    {
        Channel = new VhostUserChannel(socket, VhostUserRole.FrontEnd, VhostUserChannelKind.Main, logger);
    }

    /// <summary>The underlying channel (for raw sends).</summary>
    public VhostUserChannel Channel { get; }

    /// <summary>Set once REPLY_ACK was negotiated: every request without an explicit reply then
    /// carries NEED_REPLY and its acknowledgement is checked.</summary>
    public bool ReplyAck { get; set; }

    /// <summary>
    /// Sends a request that has an explicit reply and returns the reply (caller disposes it).
    /// </summary>
    /// <exception cref="ArgumentException">The request has no explicit reply (use <see cref="Send"/>).</exception>
    public VhostUserMessage Call(FrontEndRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default)
    {
        if (!MessageRules.HasExplicitReply(request))
            throw new ArgumentException($"{request} has no explicit reply; use Send.", nameof(request));
        return Channel.Transact((uint)request, payload, fds, expectReply: true, needAck: false)!;
    }

    /// <summary>Typed <see cref="Call(FrontEndRequest, ReadOnlySpan{byte}, ReadOnlySpan{int})"/>:
    /// sends <paramref name="payload"/> and parses the reply as <typeparamref name="TReply"/>.</summary>
    public TReply Call<TRequest, TReply>(FrontEndRequest request, in TRequest payload)
        where TRequest : struct, IVhostUserPayload<TRequest>
        where TReply : struct, IVhostUserPayload<TReply>
    {
        Span<byte> bytes = stackalloc byte[payload.WireSize];
        payload.Write(bytes);
        using var reply = Call(request, bytes);
        return reply.ParsePayload<TReply>();
    }

    /// <summary>Sends a payload-less request whose reply is a u64 (GET_FEATURES, GET_QUEUE_NUM, ...).</summary>
    public ulong GetU64(FrontEndRequest request)
    {
        using var reply = Call(request);
        return reply.ReadU64();
    }

    /// <summary>
    /// Sends a request without an explicit reply; with <see cref="ReplyAck"/> on, waits for the
    /// acknowledgement and throws <see cref="VhostUserRequestFailedException"/> if it is non-zero.
    /// </summary>
    public void Send(FrontEndRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default)
    {
        if (MessageRules.HasExplicitReply(request))
            throw new ArgumentException($"{request} has an explicit reply; use Call.", nameof(request));
        Channel.Transact((uint)request, payload, fds, expectReply: false, needAck: ReplyAck);
    }

    /// <summary>Typed <see cref="Send(FrontEndRequest, ReadOnlySpan{byte}, ReadOnlySpan{int})"/>.</summary>
    public void Send<T>(FrontEndRequest request, in T payload, ReadOnlySpan<int> fds = default)
        where T : struct, IVhostUserPayload<T>
    {
        Span<byte> bytes = stackalloc byte[payload.WireSize];
        payload.Write(bytes);
        Send(request, bytes, fds);
    }

    /// <summary>Sends a u64 request (SET_FEATURES, SET_PROTOCOL_FEATURES, SET_STATUS, ...).</summary>
    public void SetU64(FrontEndRequest request, ulong value) => Send(request, new U64Payload(value));

    public void Dispose() => Channel.Dispose();
}
