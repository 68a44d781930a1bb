namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// Request ids the back-end sends to the front-end on the back-end request channel (the socket
/// handed over with <see cref="FrontEndRequest.SetBackendReqFd"/>).
/// </summary>
public enum BackEndRequest : uint
{
    None = 0,
    /// <summary><see cref="IotlbMessage"/>: an IOTLB miss or access failure.</summary>
    IotlbMsg = 1,
    /// <summary>No payload: the device config space changed.</summary>
    ConfigChangeMsg = 2,
    /// <summary><see cref="VringArea"/> plus an optional fd to map as the queue's notify area.</summary>
    VringHostNotifierMsg = 3,
    /// <summary><see cref="VringState"/>: in-band call.</summary>
    VringCall = 4,
    /// <summary><see cref="VringState"/>: in-band error.</summary>
    VringErr = 5,
}
