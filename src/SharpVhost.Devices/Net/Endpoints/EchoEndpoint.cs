namespace SharpVhost.Devices.Net.Endpoints;

/// <summary>Sends every frame back to the guest that sent it, with destination and source MAC swapped.</summary>
public sealed class EchoEndpoint : NetEndpoint
{
    public override string Description => "echo";

    public override bool Transmit(int pair, in TxFrame frame)
    {
        var (destination, source) = frame.ReadAddresses();
        // The delivery is already counted as a backlog drop when it fails; the guest's send itself succeeded.
        Port.Deliver(frame, source, destination, swapAddresses: true);
        return true;
    }
}
