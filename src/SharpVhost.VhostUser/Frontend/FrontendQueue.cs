using SharpVhost.Interop;
using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Frontend;

/// <summary>A queue the frontend set up on the backend: the driver-side ring (split or packed) plus its kick and call eventfds.</summary>
public sealed class FrontendQueue(int index, IDriverQueue ring, EventFd kick, EventFd call) : IDisposable
{
    public int Index { get; } = index;
    public IDriverQueue Ring { get; } = ring;
    /// <summary>We signal it to tell the backend there is work.</summary>
    public EventFd Kick { get; } = kick;
    /// <summary>The backend signals it when it wants our attention (used buffers).</summary>
    public EventFd Call { get; } = call;

    /// <summary>Publishes what was added and kicks if the backend asked for it.</summary>
    public void Publish()
    {
        Ring.Publish();
        if (Ring.NeedsKick()) Kick.Signal();
    }

    public void Dispose()
    {
        Kick.Dispose();
        Call.Dispose();
    }
}
