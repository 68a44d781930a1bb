namespace SharpVhost.Devices.Block.Nbd;

/// <summary>How the NBD client behaves when the server is slow, goes away, or misbehaves.</summary>
public sealed record NbdClientOptions
{
    /// <summary>Bound on connecting and on the whole handshake.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// While requests wait on the server, the longest it may send nothing (also the bound on a reply that
    /// stops midway and on a send the server does not read). Past it the connection is dropped as hung
    /// and its requests fail with IOERR.
    /// </summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// When the connection is lost, how long the requests it carried (and new ones) wait for a reconnect
    /// before they fail with IOERR; those still within it are sent again on the new connection.
    /// Zero (QEMU's default for its reconnect-delay too) fails them at once. Reconnecting goes on in the
    /// background either way, so that later requests find the server again.
    /// </summary>
    public TimeSpan ReconnectDelay { get; init; } = TimeSpan.Zero;
}
