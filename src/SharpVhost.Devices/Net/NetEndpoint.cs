namespace SharpVhost.Devices.Net;

/// <summary>
/// Where a port's frames go and come from: a switch port, a TAP device, a sink, a source, an echo.
/// One endpoint object per port. Frames the guest sends arrive in <see cref="Transmit"/> on the
/// transmit queue's worker; frames for the guest are read by the receive queue's worker from the
/// source <see cref="CreateRxSource"/> returns (by default the port's backlog, which others fill).
/// </summary>
public abstract class NetEndpoint : IDisposable
{
    private NetPort? _port;

    /// <summary>The port this endpoint serves (set once the device is built).</summary>
    protected NetPort Port => _port ?? throw new InvalidOperationException("endpoint is not attached to a port");

    public abstract string Description { get; }

    /// <summary>Checksum and segmentation offload bits (CSUM, GUEST_CSUM, HOST_TSO4, ...) this endpoint can carry.</summary>
    public virtual ulong OffloadFeatures => 0;

    /// <summary>Whether frames bigger than the MTU (GSO) may reach the guest: backlogs then need 64 KiB slots.</summary>
    public virtual bool ReceivesLargeFrames => false;

    internal void Attach(NetPort port)
    {
        if (_port is not null) throw new InvalidOperationException("endpoint is already attached");
        _port = port;
        OnAttached(port);
    }

    protected virtual void OnAttached(NetPort port) { }

    /// <summary>The guest accepted <paramref name="features"/> (e.g. a TAP device then sets its offloads).</summary>
    public virtual void OnFeaturesNegotiated(ulong features) { }

    /// <summary>
    /// A frame the guest sent on queue pair <paramref name="pair"/>; valid only during the call.
    /// Returns false if it had to be dropped (counted as an endpoint drop).
    /// </summary>
    public abstract bool Transmit(int pair, in TxFrame frame);

    /// <summary>Frames for receive queue pair <paramref name="pair"/>.</summary>
    public virtual IRxFrameSource CreateRxSource(int pair) => Port.Backlog(pair);

    public virtual void Dispose() { }
}
