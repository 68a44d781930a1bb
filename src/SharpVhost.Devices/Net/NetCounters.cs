namespace SharpVhost.Devices.Net;

/// <summary>
/// What happened to a port's frames. Several threads update one port (its queue workers, other ports
/// delivering to it), so fields are changed with Interlocked and read with <see cref="Interlocked.Read"/>.
/// "Tx" is guest to network, "Rx" is network to guest, as the guest sees it.
/// </summary>
public sealed class NetCounters
{
    public long TxFrames, TxBytes;
    /// <summary>Frames the guest sent with offloads: a checksum to finish (NEEDS_CSUM) or segmentation (GSO).</summary>
    public long TxOffloaded;
    /// <summary>Chains shorter than the virtio-net header, or headers with flags or GSO types not negotiated.</summary>
    public long TxBadHeader;
    /// <summary>Frames shorter than an Ethernet header.</summary>
    public long TxTooShort;
    /// <summary>Frames longer than the MTU allows (plus Ethernet and VLAN headers), or than 64 KiB with GSO.</summary>
    public long TxTooLong;
    /// <summary>Frames the endpoint could not take (TAP write failed, ...).</summary>
    public long TxEndpointDrops;

    public long RxFrames, RxBytes;
    /// <summary>Frames for this port dropped because its backlog was full (the guest is not draining RX).</summary>
    public long RxBacklogFull;
    /// <summary>Frames for this port longer than its MTU allows (e.g. from a port with a larger MTU).</summary>
    public long RxTooLong;
    /// <summary>Frames dropped because the guest's receive buffers could not hold them.</summary>
    public long RxBufferTooSmall;
    /// <summary>Frames dropped because the guest had no receive buffers when an endpoint could not wait.</summary>
    public long RxNoBuffers;
    /// <summary>Receive buffers returned unused because they could not even hold the virtio-net header.</summary>
    public long RxBadBuffer;

    public long TxDrops => Interlocked.Read(ref TxBadHeader) + Interlocked.Read(ref TxTooShort) + Interlocked.Read(ref TxTooLong) + Interlocked.Read(ref TxEndpointDrops);
    public long RxDrops => Interlocked.Read(ref RxBacklogFull) + Interlocked.Read(ref RxTooLong) + Interlocked.Read(ref RxBufferTooSmall) + Interlocked.Read(ref RxNoBuffers);

    public override string ToString()
        => $"tx {Interlocked.Read(ref TxFrames)} frames {Interlocked.Read(ref TxBytes)} bytes ({Interlocked.Read(ref TxOffloaded)} offloaded), {TxDrops} dropped " +
           $"(bad header {Interlocked.Read(ref TxBadHeader)}, short {Interlocked.Read(ref TxTooShort)}, long {Interlocked.Read(ref TxTooLong)}, endpoint {Interlocked.Read(ref TxEndpointDrops)}); " +
           $"rx {Interlocked.Read(ref RxFrames)} frames {Interlocked.Read(ref RxBytes)} bytes, {RxDrops} dropped " +
           $"(backlog full {Interlocked.Read(ref RxBacklogFull)}, too long {Interlocked.Read(ref RxTooLong)}, buffer too small {Interlocked.Read(ref RxBufferTooSmall)}, no buffers {Interlocked.Read(ref RxNoBuffers)})";
}
