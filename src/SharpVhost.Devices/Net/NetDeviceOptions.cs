namespace SharpVhost.Devices.Net;

/// <summary>How a virtio-net device presents itself.</summary>
public sealed record NetDeviceOptions
{
    /// <summary>Name in logs and counters (the socket path, or "port0").</summary>
    public string Name { get; init; } = "net";
    /// <summary>The MAC address in config space; a random local one when not given.</summary>
    public MacAddress? Mac { get; init; }
    public int QueuePairs { get; init; } = 1;
    /// <summary>MTU offered to the driver (VIRTIO_NET_F_MTU) and enforced on transmit; NET_SET_MTU may lower it.</summary>
    public int Mtu { get; init; } = VirtioNet.DefaultMtu;
    /// <summary>Whether to offer VIRTIO_NET_F_MTU (the driver then uses <see cref="Mtu"/>).</summary>
    public bool OfferMtu { get; init; }
    /// <summary>Frames each receive queue can hold while its guest is not taking them (power of two).</summary>
    public int RxBacklog { get; init; } = 1024;
}
