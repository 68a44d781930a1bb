namespace SharpVhost.Devices.Net.Endpoints;

/// <summary>Counts and drops what the guest sends (the port's counters do the counting); sends nothing. For transmit benchmarks.</summary>
public sealed class SinkEndpoint : NetEndpoint
{
    public override string Description => "sink";
    public override bool Transmit(int pair, in TxFrame frame) => true;
}
