namespace SharpVhost.Virtio;

/// <summary>Transport-level virtio feature bits (device-independent).</summary>
public static class VirtioFeatureBits
{
    public const int NotifyOnEmpty = 24;
    public const int LogAll = 26;            // VHOST_F_LOG_ALL
    public const int RingIndirectDesc = 28;
    public const int RingEventIdx = 29;
    public const int ProtocolFeatures = 30;  // VHOST_USER_F_PROTOCOL_FEATURES
    public const int Version1 = 32;
    public const int AccessPlatform = 33;
    public const int RingPacked = 34;
    public const int InOrder = 35;

    public static ulong Bit(int bit) => 1ul << bit;

    /// <summary>Ring features every SharpVhost device offers: VERSION_1, INDIRECT, EVENT_IDX, NOTIFY_ON_EMPTY, LOG_ALL.</summary>
    public const ulong RingBits = (1ul << Version1) | (1ul << RingIndirectDesc) | (1ul << RingEventIdx) | (1ul << NotifyOnEmpty) | (1ul << LogAll);

    public static bool Has(ulong features, int bit) => (features & (1ul << bit)) != 0;
}
