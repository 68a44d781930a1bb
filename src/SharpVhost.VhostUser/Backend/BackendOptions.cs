using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Backend;

/// <summary>How a backend session runs its queues.</summary>
public sealed record BackendOptions
{
    public MetadataAccess Metadata { get; init; } = MetadataAccess.Direct;
    /// <summary>Workers spin on the ring instead of sleeping on the kick eventfd.</summary>
    public bool BusyPoll { get; init; }
}
