namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// Protocol feature bits negotiated with GET/SET_PROTOCOL_FEATURES (only when the virtio feature
/// bit 30, <see cref="VhostUserFeatureBits.ProtocolFeatures"/>, was offered).
/// </summary>
[Flags]
public enum VhostUserProtocolFeatures : ulong
{
    None = 0,
    /// <summary>GET_QUEUE_NUM is supported.</summary>
    MultiQueue = 1UL << 0,
    /// <summary>SET_LOG_BASE carries a shared-memory fd.</summary>
    LogShmFd = 1UL << 1,
    Rarp = 1UL << 2,
    /// <summary>The front-end may set NEED_REPLY on any request and get a u64 status back.</summary>
    ReplyAck = 1UL << 3,
    Mtu = 1UL << 4,
    /// <summary>SET_BACKEND_REQ_FD gives the back-end a channel to send requests to the front-end.</summary>
    BackendReq = 1UL << 5,
    CrossEndian = 1UL << 6,
    CryptoSession = 1UL << 7,
    Pagefault = 1UL << 8,
    /// <summary>GET/SET_CONFIG are supported (QEMU's vhost-user-blk requires it).</summary>
    Config = 1UL << 9,
    BackendSendFd = 1UL << 10,
    HostNotifier = 1UL << 11,
    InflightShmFd = 1UL << 12,
    ResetDevice = 1UL << 13,
    InbandNotifications = 1UL << 14,
    /// <summary>GET_MAX_MEM_SLOTS, ADD_MEM_REG and REM_MEM_REG are supported.</summary>
    ConfigureMemSlots = 1UL << 15,
    Status = 1UL << 16,
}

/// <summary>Virtio feature bits that belong to vhost-user itself rather than to a device.</summary>
public static class VhostUserFeatureBits
{
    /// <summary>Bit 30: the back-end understands GET/SET_PROTOCOL_FEATURES; rings start disabled.</summary>
    public const ulong ProtocolFeatures = 1UL << 30;

    /// <summary>Bit 26: dirty logging of device writes for live migration.</summary>
    public const ulong LogAll = 1UL << 26;
}
