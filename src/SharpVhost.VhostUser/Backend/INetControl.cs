namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// The two vhost-user requests only a net device answers: NET_SET_MTU and SEND_RARP. A device that
/// implements this gets them from the session; for any other device they are refused.
/// </summary>
public interface INetControl
{
    /// <summary>NET_SET_MTU: the MTU the frontend configured; false to refuse it.</summary>
    bool SetMtu(int mtu);

    /// <summary>SEND_RARP: announce <paramref name="mac"/> (6 bytes) after migration.</summary>
    void SendRarp(ReadOnlySpan<byte> mac);
}
