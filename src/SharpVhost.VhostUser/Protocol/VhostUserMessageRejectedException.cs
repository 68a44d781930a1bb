namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// A complete message arrived but broke its rules (size, fd count, fields). Unlike a plain
/// <see cref="VhostUserProtocolException"/> the byte stream is still in step, so a back-end may
/// answer with an error (when <see cref="VhostUserHeader.NeedReply"/> is set) and keep serving.
/// The message's fds have been closed.
/// </summary>
public sealed class VhostUserMessageRejectedException(VhostUserHeader header, string message)
    : VhostUserProtocolException(message)
{
    /// <summary>The header of the rejected message.</summary>
    public VhostUserHeader Header { get; } = header;
}
