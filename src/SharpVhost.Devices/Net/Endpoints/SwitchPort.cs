namespace SharpVhost.Devices.Net.Endpoints;

/// <summary>One port of a <see cref="NetSwitch"/>: the endpoint of one net device, with the switch's per-port counters.</summary>
public sealed class SwitchPort : NetEndpoint
{
    private readonly NetSwitch _switch;

    /// <summary>Frames from this port sent to one learned port.</summary>
    public long Unicast;
    /// <summary>Frames from this port sent to every other port (broadcast, multicast, unknown destination).</summary>
    public long Flooded;
    /// <summary>Frames from this port whose destination is behind this same port (not forwarded).</summary>
    public long Filtered;
    /// <summary>Addresses learned (or moved) onto this port.</summary>
    public long Learned;

    public string Name { get; }
    public int Number { get; }
    public override string Description => $"switch port {Number} ({Name})";

    internal SwitchPort(NetSwitch owner, string name, int number)
    {
        _switch = owner;
        Name = name;
        Number = number;
    }

    /// <summary>The device behind this port (null until a device is built around the endpoint).</summary>
    public NetPort? Device { get; private set; }

    protected override void OnAttached(NetPort port) => Device = port;

    public override bool Transmit(int pair, in TxFrame frame)
    {
        _switch.Forward(this, frame);
        return true;
    }

    /// <summary>Delivers a frame forwarded from another port into this port's receive backlog.</summary>
    internal void Deliver(in TxFrame frame, MacAddress destination, MacAddress source)
        => Device?.Deliver(frame, destination, source);

    public override string ToString()
        => $"{Description}: unicast {Interlocked.Read(ref Unicast)}, flooded {Interlocked.Read(ref Flooded)}, filtered {Interlocked.Read(ref Filtered)}, learned {Interlocked.Read(ref Learned)}";
}
