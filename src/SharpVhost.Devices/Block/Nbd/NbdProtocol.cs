namespace SharpVhost.Devices.Block.Nbd;

/// <summary>The wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). Everything on the wire is big-endian.</summary>
internal static class NbdProtocol
{
    public const ulong InitMagic = 0x4e42444d41474943;      // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454f5054;    // "IHAVEOPT"
    public const ulong OldstyleMagic = 0x0000420281861253;
    public const ulong OptionReplyMagic = 0x0003e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    public const int DefaultPort = 10809;
    public const int RequestSize = 28;
    public const int SimpleReplySize = 16;
    public const int StructuredReplySize = 20;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFixedNewstyle = 1 << 0;
    public const uint ClientNoZeroes = 1 << 1;

    // Options.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;

    // Option replies.
    public const uint RepAck = 1;
    public const uint RepInfo = 3;
    public const uint RepErrorBit = 1u << 31;
    public const uint RepErrUnsupported = RepErrorBit | 1;

    // NBD_INFO types.
    public const ushort InfoExport = 0;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxCanMultiConn = 1 << 8;

    // Commands and their flags.
    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisconnect = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;

    // Structured reply chunks.
    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ChunkNone = 0;
    public const ushort ChunkOffsetData = 1;
    public const ushort ChunkOffsetHole = 2;
    public const ushort ChunkErrorBit = 1 << 15;
    public const ushort ChunkError = ChunkErrorBit | 1;
    public const ushort ChunkErrorOffset = ChunkErrorBit | 2;

    /// <summary>The protocol's bound on a string (an error message, an export name).</summary>
    public const int MaxString = 4096;

    /// <summary>The payload limit a client assumes when the server sends no NBD_INFO_BLOCK_SIZE.</summary>
    public const uint DefaultMaxPayload = 32 << 20;

    /// <summary>NBD_ESHUTDOWN: the server is going away; the request was not carried out and may be sent again.</summary>
    public const uint ErrorShutdown = 108;

    /// <summary>NBD error values are Linux errnos for the few the protocol names; anything else is EIO.</summary>
    public static int ToErrno(uint nbdError) => nbdError switch
    {
        1 or 5 or 12 or 22 or 28 or 75 or 95 or 108 => (int)nbdError,
        _ => 5,
    };
}
