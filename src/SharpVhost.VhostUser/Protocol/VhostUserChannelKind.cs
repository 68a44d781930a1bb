namespace SharpVhost.VhostUser.Protocol;

/// <summary>Which of the two vhost-user sockets a message travels on; the request ids differ.</summary>
public enum VhostUserChannelKind
{
    /// <summary>The main socket: the front-end sends <see cref="FrontEndRequest"/>s, the back-end replies.</summary>
    Main,
    /// <summary>The socket from SET_BACKEND_REQ_FD: the back-end sends <see cref="BackEndRequest"/>s, the front-end replies.</summary>
    BackendRequests,
}

/// <summary>Which end of the protocol this process plays.</summary>
public enum VhostUserRole
{
    /// <summary>The side that owns the guest and hands out rings (QEMU, our frontend library).</summary>
    FrontEnd,
    /// <summary>The side that services the rings (our device backends).</summary>
    BackEnd,
}
