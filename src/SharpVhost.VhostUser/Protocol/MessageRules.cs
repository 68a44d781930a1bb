namespace SharpVhost.VhostUser.Protocol;

/// <summary>What a payload must look like for one kind of message.</summary>
public enum PayloadShape
{
    /// <summary>No payload at all.</summary>
    Empty,
    /// <summary>Exactly <see cref="MessageRule.FixedSize"/> bytes.</summary>
    Fixed,
    /// <summary>A <see cref="MemoryTable"/>.</summary>
    MemoryTable,
    /// <summary>A <see cref="ConfigSpace"/>.</summary>
    Config,
    /// <summary>A <see cref="ConfigSpace"/> or empty (GET_CONFIG's failure reply).</summary>
    ConfigOrEmpty,
    /// <summary>Empty or a u64 (SET_LOG_BASE's reply: QEMU sends u64, DPDK sends nothing).</summary>
    EmptyOrU64,
    /// <summary>Not checked beyond <see cref="VhostUserLimits.MaxPayloadSize"/> (unknown or unsupported requests).</summary>
    Unchecked,
}

/// <summary>How many fds must accompany a message.</summary>
public enum FdRule
{
    None,
    ExactlyOne,
    /// <summary>Zero or one (REM_MEM_REG tolerates a stray fd; GET_INFLIGHT_FD's reply has none when empty).</summary>
    ZeroOrOne,
    /// <summary>One per region of the memory table.</summary>
    OnePerRegion,
    /// <summary>One unless the <see cref="VringFd"/> no-fd bit (bit 8) is set.</summary>
    PerVringFdBit,
}

/// <summary>The size and fd expectations for one request id in one direction.</summary>
/// <param name="Shape">Payload shape.</param>
/// <param name="FixedSize">Byte count when <paramref name="Shape"/> is <see cref="PayloadShape.Fixed"/>.</param>
/// <param name="Fds">How many fds must come with it.</param>
/// <param name="Known">False for ids this implementation does not know.</param>
public readonly record struct MessageRule(PayloadShape Shape, int FixedSize, FdRule Fds, bool Known = true)
{
    internal static MessageRule None => new(PayloadShape.Empty, 0, FdRule.None);
    internal static MessageRule Bytes(int size, FdRule fds = FdRule.None) => new(PayloadShape.Fixed, size, fds);
    internal static MessageRule U64 => Bytes(8);
    internal static readonly MessageRule Unknown = new(PayloadShape.Unchecked, 0, FdRule.None, Known: false);
}

/// <summary>
/// The table of what each message must carry, per channel and direction. The codec enforces it
/// when decoding; sessions can ask it whether a request is answered by an explicit reply.
/// </summary>
public static class MessageRules
{
    /// <summary>The rule for a message with id <paramref name="request"/>.</summary>
    public static MessageRule For(VhostUserChannelKind channel, uint request, bool isReply) =>
        (channel, isReply) switch
        {
            (VhostUserChannelKind.Main, false) => FrontEndRequestRule((FrontEndRequest)request),
            (VhostUserChannelKind.Main, true) => FrontEndReplyRule((FrontEndRequest)request),
            (VhostUserChannelKind.BackendRequests, false) => BackEndRequestRule((BackEndRequest)request),
            _ => MessageRule.U64, // the front-end only ever acknowledges back-end requests
        };

    /// <summary>
    /// True for front-end requests that the back-end always answers with a payload of their own,
    /// whatever NEED_REPLY says. Every other request is answered only when NEED_REPLY is set (REPLY_ACK),
    /// with a u64 status.
    /// </summary>
    public static bool HasExplicitReply(FrontEndRequest request) => request switch
    {
        FrontEndRequest.GetFeatures or FrontEndRequest.GetProtocolFeatures or FrontEndRequest.GetVringBase
            or FrontEndRequest.GetQueueNum or FrontEndRequest.GetConfig or FrontEndRequest.GetInflightFd
            or FrontEndRequest.GetMaxMemSlots or FrontEndRequest.GetStatus or FrontEndRequest.SetLogBase
            or FrontEndRequest.PostcopyAdvise or FrontEndRequest.PostcopyEnd
            or FrontEndRequest.CreateCryptoSession => true,
        _ => false,
    };

    /// <summary>Back-end requests have no explicit replies; only REPLY_ACK acknowledgements.</summary>
    public static bool HasExplicitReply(BackEndRequest request) => false;

    private static MessageRule FrontEndRequestRule(FrontEndRequest request) => request switch
    {
        FrontEndRequest.GetFeatures or FrontEndRequest.SetOwner or FrontEndRequest.ResetOwner
            or FrontEndRequest.GetProtocolFeatures or FrontEndRequest.GetQueueNum or FrontEndRequest.ResetDevice
            or FrontEndRequest.GetMaxMemSlots or FrontEndRequest.GetStatus or FrontEndRequest.PostcopyAdvise
            or FrontEndRequest.PostcopyListen or FrontEndRequest.PostcopyEnd => MessageRule.None,
        FrontEndRequest.SetFeatures or FrontEndRequest.SetProtocolFeatures or FrontEndRequest.SendRarp
            or FrontEndRequest.NetSetMtu or FrontEndRequest.SetStatus
            or FrontEndRequest.CloseCryptoSession => MessageRule.U64,
        FrontEndRequest.SetMemTable => new(PayloadShape.MemoryTable, 0, FdRule.OnePerRegion),
        FrontEndRequest.SetLogBase => MessageRule.Bytes(LogDescription.Size, FdRule.ExactlyOne),
        FrontEndRequest.SetLogFd or FrontEndRequest.SetBackendReqFd or FrontEndRequest.GpuSetSocket =>
            new(PayloadShape.Empty, 0, FdRule.ExactlyOne),
        FrontEndRequest.SetVringNum or FrontEndRequest.SetVringBase or FrontEndRequest.GetVringBase
            or FrontEndRequest.SetVringEnable or FrontEndRequest.SetVringEndian
            or FrontEndRequest.VringKick => MessageRule.Bytes(VringState.Size),
        FrontEndRequest.SetVringAddr => MessageRule.Bytes(VringAddress.Size),
        FrontEndRequest.SetVringKick or FrontEndRequest.SetVringCall or FrontEndRequest.SetVringErr =>
            MessageRule.Bytes(VringFd.Size, FdRule.PerVringFdBit),
        FrontEndRequest.IotlbMsg => MessageRule.Bytes(IotlbMessage.WireSizeBytes),
        FrontEndRequest.GetConfig or FrontEndRequest.SetConfig => new(PayloadShape.Config, 0, FdRule.None),
        FrontEndRequest.GetInflightFd => MessageRule.Bytes(InflightDescription.Size),
        FrontEndRequest.SetInflightFd => MessageRule.Bytes(InflightDescription.Size, FdRule.ExactlyOne),
        FrontEndRequest.AddMemReg => MessageRule.Bytes(SingleMemoryRegion.Size, FdRule.ExactlyOne),
        FrontEndRequest.RemMemReg => MessageRule.Bytes(SingleMemoryRegion.Size, FdRule.ZeroOrOne),
        FrontEndRequest.CreateCryptoSession => new(PayloadShape.Unchecked, 0, FdRule.None),
        _ => MessageRule.Unknown,
    };

    private static MessageRule FrontEndReplyRule(FrontEndRequest request) => request switch
    {
        FrontEndRequest.GetFeatures or FrontEndRequest.GetProtocolFeatures or FrontEndRequest.GetQueueNum
            or FrontEndRequest.GetMaxMemSlots or FrontEndRequest.GetStatus => MessageRule.U64,
        FrontEndRequest.GetVringBase => MessageRule.Bytes(VringState.Size),
        FrontEndRequest.SetLogBase => new(PayloadShape.EmptyOrU64, 0, FdRule.None),
        FrontEndRequest.GetConfig => new(PayloadShape.ConfigOrEmpty, 0, FdRule.None),
        FrontEndRequest.GetInflightFd => MessageRule.Bytes(InflightDescription.Size, FdRule.ZeroOrOne),
        FrontEndRequest.PostcopyAdvise => new(PayloadShape.Unchecked, 0, FdRule.ZeroOrOne),
        FrontEndRequest.CreateCryptoSession => new(PayloadShape.Unchecked, 0, FdRule.None),
        _ => MessageRule.U64, // REPLY_ACK status
    };

    private static MessageRule BackEndRequestRule(BackEndRequest request) => request switch
    {
        BackEndRequest.IotlbMsg => MessageRule.Bytes(IotlbMessage.WireSizeBytes),
        BackEndRequest.ConfigChangeMsg => MessageRule.None,
        BackEndRequest.VringHostNotifierMsg => MessageRule.Bytes(VringArea.WireSizeBytes, FdRule.PerVringFdBit),
        BackEndRequest.VringCall or BackEndRequest.VringErr => MessageRule.Bytes(VringState.Size),
        _ => MessageRule.Unknown,
    };
}
