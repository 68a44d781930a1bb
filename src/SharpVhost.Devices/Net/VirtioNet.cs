namespace SharpVhost.Devices.Net;

/// <summary>virtio-net constants (virtio 1.2, 5.1) and the vhost-user protocol features a net device adds.</summary>
public static class VirtioNet
{
    // Device feature bits.
    public const int FeatureCsum = 0, FeatureGuestCsum = 1, FeatureMtu = 3, FeatureMac = 5,
        FeatureGuestTso4 = 7, FeatureGuestTso6 = 8, FeatureGuestEcn = 9, FeatureGuestUfo = 10,
        FeatureHostTso4 = 11, FeatureHostTso6 = 12, FeatureHostEcn = 13, FeatureHostUfo = 14,
        FeatureMrgRxbuf = 15, FeatureStatus = 16, FeatureCtrlVq = 17, FeatureMq = 22;

    // vhost-user protocol feature bits.
    public const int ProtocolMq = 0, ProtocolRarp = 2, ProtocolMtu = 4;

    /// <summary>The header with num_buffers: always with VERSION_1 or MRG_RXBUF.</summary>
    public const int HeaderSize = 12;
    /// <summary>The legacy header without num_buffers.</summary>
    public const int LegacyHeaderSize = 10;

    // virtio_net_hdr.flags
    public const byte HeaderNeedsCsum = 1, HeaderDataValid = 2;
    // virtio_net_hdr.gso_type
    public const byte GsoNone = 0, GsoTcpV4 = 1, GsoUdp = 3, GsoTcpV6 = 4, GsoEcn = 0x80;

    // Config status bits.
    public const ushort StatusLinkUp = 1;

    public const int EthernetHeaderSize = 14;
    /// <summary>What a frame may add to the MTU: the Ethernet header and one VLAN tag.</summary>
    public const int FrameOverhead = EthernetHeaderSize + 4;
    /// <summary>Largest frame with segmentation offload (a 64 KiB IP packet plus Ethernet and VLAN headers).</summary>
    public const int MaxGsoFrameLength = 65535 + FrameOverhead;
    public const int DefaultMtu = 1500;
    public const int MinMtu = 68, MaxMtu = 65535;
}
