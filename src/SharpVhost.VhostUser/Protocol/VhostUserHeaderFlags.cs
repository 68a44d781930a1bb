namespace SharpVhost.VhostUser.Protocol;

/// <summary>The flags word of a message header.</summary>
[Flags]
public enum VhostUserHeaderFlags : uint
{
    None = 0,
    /// <summary>The protocol version lives in bits 0-1; version 1 is the only one defined.</summary>
    Version1 = 0x1,
    /// <summary>Mask of the version bits.</summary>
    VersionMask = 0x3,
    /// <summary>Set on every reply.</summary>
    Reply = 0x4,
    /// <summary>The sender wants an explicit acknowledgement (only meaningful with REPLY_ACK).</summary>
    NeedReply = 0x8,
}
