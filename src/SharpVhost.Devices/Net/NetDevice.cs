using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Net;

/// <summary>
/// A virtio-net device: features, config space, and per queue a processor that moves frames between
/// the guest and the endpoint. Queues come in pairs, receive (even index) then transmit (odd).
/// </summary>
public sealed class NetDevice : IVhostUserDevice, INetControl, IDisposable
{
    private readonly byte[] _config;

    public NetEndpoint Endpoint { get; }
    public NetPort Port { get; }
    public NetDeviceOptions Options { get; }
    public string Kind => "net";
    public int QueueCount => 2 * Options.QueuePairs;
    public ReadOnlySpan<byte> Config => _config;
    public ulong Features { get; }
    public ulong NegotiatedFeatures => Port.NegotiatedFeatures;

    /// <summary>MQ (several queue pairs), MTU (NET_SET_MTU) and RARP (SEND_RARP after migration).</summary>
    public ulong ExtraProtocolFeatures => (1ul << VirtioNet.ProtocolMq) | (1ul << VirtioNet.ProtocolMtu) | (1ul << VirtioNet.ProtocolRarp);

    public NetDevice(NetEndpoint endpoint, NetDeviceOptions options)
    {
        if (options.Mtu < VirtioNet.MinMtu || options.Mtu > VirtioNet.MaxMtu) throw new ArgumentOutOfRangeException(nameof(options), $"MTU between {VirtioNet.MinMtu} and {VirtioNet.MaxMtu}");
        Endpoint = endpoint;
        Options = options;
        var mac = options.Mac ?? MacAddress.RandomLocal();
        int slot = endpoint.ReceivesLargeFrames ? VirtioNet.MaxGsoFrameLength : options.Mtu + VirtioNet.FrameOverhead;
        Port = new NetPort(options.Name, mac, options.QueuePairs, options.Mtu, options.RxBacklog, slot);
        ulong f = VirtioFeatureBits.RingBits | Bit(VirtioFeatureBits.RingPacked)
            | Bit(VirtioNet.FeatureMrgRxbuf) | Bit(VirtioNet.FeatureStatus) | Bit(VirtioNet.FeatureMac)
            | endpoint.OffloadFeatures;
        if (options.QueuePairs > 1) f |= Bit(VirtioNet.FeatureMq);
        if (options.OfferMtu) f |= Bit(VirtioNet.FeatureMtu);
        Features = f;
        _config = NetConfig.Build(mac, VirtioNet.StatusLinkUp, options.QueuePairs, options.Mtu);
        endpoint.Attach(Port);
    }

    private static ulong Bit(int bit) => 1ul << bit;

    /// <summary>Config space is read-only for virtio-net drivers (the MAC is writable only in legacy devices).</summary>
    public bool WriteConfig(uint offset, ReadOnlySpan<byte> data) => false;

    public void OnFeaturesNegotiated(ulong features)
    {
        Port.ApplyFeatures(features);
        Endpoint.OnFeaturesNegotiated(features);
    }

    public IQueueProcessor CreateProcessor(int queueIndex)
    {
        int pair = queueIndex / 2;
        if (pair >= Options.QueuePairs) throw new ArgumentOutOfRangeException(nameof(queueIndex));
        if (queueIndex % 2 == 1) return new TxQueueProcessor(Port, Endpoint, pair);
        return new RxQueueProcessor(Port, pair, Endpoint.CreateRxSource(pair));
    }

    /// <summary>NET_SET_MTU: the frontend tells us the MTU it configured. False if we cannot honour it.</summary>
    public bool SetMtu(int mtu) => Port.SetMtu(mtu);

    /// <summary>
    /// SEND_RARP: after migration, announce that <paramref name="mac"/> now lives here, as QEMU does for
    /// its own backends: a RARP broadcast sent as if by the guest, so switches learn where it went.
    /// </summary>
    public void SendRarp(ReadOnlySpan<byte> mac) => SendRarp(MacAddress.Read(mac));

    public void SendRarp(MacAddress mac)
    {
        Span<byte> frame = stackalloc byte[RarpFrame.Length];
        RarpFrame.Build(frame, mac);
        Endpoint.Transmit(0, new TxFrame(frame));
    }

    public void Dispose()
    {
        Endpoint.Dispose();
        Port.Dispose();
    }
}
