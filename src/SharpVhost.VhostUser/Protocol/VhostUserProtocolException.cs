namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// The peer broke the vhost-user protocol: truncated or malformed message, unknown version,
/// payload of the wrong size, wrong number of file descriptors, unexpected reply. Any fds that came
/// with the offending message have been closed when this is thrown. The usual reaction is to drop
/// the connection.
/// </summary>
public class VhostUserProtocolException : Exception
{
    public VhostUserProtocolException(string message) : base(message) { }
    public VhostUserProtocolException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// The peer answered a request with a non-zero status (a REPLY_ACK failure or an empty GET_CONFIG reply).
/// The connection itself is still in a valid state.
/// </summary>
public sealed class VhostUserRequestFailedException(string message, ulong status) : Exception(message)
{
    /// <summary>The non-zero status the peer returned.</summary>
    public ulong Status { get; } = status;
}
