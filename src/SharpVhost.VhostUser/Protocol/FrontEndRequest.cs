namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// Request ids the front-end (e.g. QEMU) sends to the back-end on the main socket.
/// The back-end's reply, when there is one, carries the same id with the reply flag set.
/// </summary>
public enum FrontEndRequest : uint
{
    None = 0,
    /// <summary>Reply: u64 virtio feature bits the back-end offers.</summary>
    GetFeatures = 1,
    /// <summary>u64: the virtio features the front-end accepted.</summary>
    SetFeatures = 2,
    /// <summary>No payload; marks the start of a session.</summary>
    SetOwner = 3,
    /// <summary>No payload; deprecated, treat as "disable all rings" or ignore.</summary>
    ResetOwner = 4,
    /// <summary><see cref="MemoryTable"/> plus one fd per region.</summary>
    SetMemTable = 5,
    /// <summary><see cref="LogDescription"/> plus the log's shared-memory fd; always answered (u64 0).</summary>
    SetLogBase = 6,
    /// <summary>No payload; an eventfd to signal that the log changed.</summary>
    SetLogFd = 7,
    /// <summary><see cref="VringState"/>: queue size.</summary>
    SetVringNum = 8,
    /// <summary><see cref="VringAddress"/>: where the ring's three parts live.</summary>
    SetVringAddr = 9,
    /// <summary><see cref="VringState"/>: next available index to process.</summary>
    SetVringBase = 10,
    /// <summary><see cref="VringState"/>; stops the ring; reply: <see cref="VringState"/> with the next index.</summary>
    GetVringBase = 11,
    /// <summary><see cref="VringFd"/> plus the kick eventfd unless its no-fd bit is set.</summary>
    SetVringKick = 12,
    /// <summary><see cref="VringFd"/> plus the call eventfd unless its no-fd bit is set.</summary>
    SetVringCall = 13,
    /// <summary><see cref="VringFd"/> plus the error eventfd unless its no-fd bit is set.</summary>
    SetVringErr = 14,
    /// <summary>Reply: u64 <see cref="VhostUserProtocolFeatures"/>.</summary>
    GetProtocolFeatures = 15,
    /// <summary>u64 <see cref="VhostUserProtocolFeatures"/> the front-end accepted.</summary>
    SetProtocolFeatures = 16,
    /// <summary>Reply: u64 maximum number of queues.</summary>
    GetQueueNum = 17,
    /// <summary><see cref="VringState"/>: num 1 enables, 0 disables the ring.</summary>
    SetVringEnable = 18,
    /// <summary>u64 whose first 6 bytes are the guest MAC.</summary>
    SendRarp = 19,
    /// <summary>u64 MTU.</summary>
    NetSetMtu = 20,
    /// <summary>No payload; the socket fd of the back-end request channel.</summary>
    SetBackendReqFd = 21,
    /// <summary><see cref="IotlbMessage"/>: update or invalidate a device IOTLB entry.</summary>
    IotlbMsg = 22,
    /// <summary><see cref="VringState"/>: 0 little endian, 1 big endian (legacy devices).</summary>
    SetVringEndian = 23,
    /// <summary><see cref="ConfigSpace"/>; reply: <see cref="ConfigSpace"/> of the same size (empty = error).</summary>
    GetConfig = 24,
    /// <summary><see cref="ConfigSpace"/> to write.</summary>
    SetConfig = 25,
    CreateCryptoSession = 26,
    CloseCryptoSession = 27,
    PostcopyAdvise = 28,
    PostcopyListen = 29,
    PostcopyEnd = 30,
    /// <summary><see cref="InflightDescription"/>; reply: <see cref="InflightDescription"/> plus the buffer's fd.</summary>
    GetInflightFd = 31,
    /// <summary><see cref="InflightDescription"/> plus the buffer's fd.</summary>
    SetInflightFd = 32,
    GpuSetSocket = 33,
    /// <summary>No payload: disable all rings and reset device state.</summary>
    ResetDevice = 34,
    /// <summary><see cref="VringState"/>: in-band kick.</summary>
    VringKick = 35,
    /// <summary>Reply: u64 number of memory slots the back-end supports.</summary>
    GetMaxMemSlots = 36,
    /// <summary><see cref="SingleMemoryRegion"/> plus its fd.</summary>
    AddMemReg = 37,
    /// <summary><see cref="SingleMemoryRegion"/>; an fd, if sent anyway, must be closed unused.</summary>
    RemMemReg = 38,
    /// <summary>u64 virtio device status byte.</summary>
    SetStatus = 39,
    /// <summary>Reply: u64 virtio device status byte.</summary>
    GetStatus = 40,
}
