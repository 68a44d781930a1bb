using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Backend;

/// <summary>How a backend session runs its queues.</summary>
public sealed record BackendOptions
{
    public MetadataAccess Metadata { get; init; } = MetadataAccess.Direct;
    /// <summary>Workers spin on the ring instead of sleeping on the kick eventfd.</summary>
    public bool BusyPoll { get; init; }
    /// <summary>
    /// The longest a worker polls its ring after it runs dry before sleeping on the kick (the window
    /// adapts below this, see <see cref="AdaptivePoll"/>); zero: sleep at once. QEMU's iothreads default to 32 µs.
    /// </summary>
    public TimeSpan PollMax { get; init; } = DefaultPollMax;

    public static readonly TimeSpan DefaultPollMax = TimeSpan.FromMicroseconds(32);
    /// <summary>
    /// Refuse memory, log and inflight fds that cannot be sealed against shrinking (plain files,
    /// hugetlbfs, unsealable memfds): a frontend that truncates such a file after sharing it can end
    /// the backend with SIGBUS. Off by default because QEMU's file-backed memory cannot be sealed;
    /// QEMU's memfd memory (memory-backend-memfd, sealed by default) passes.
    /// </summary>
    public bool RequireSealedMemory { get; init; }

    /// <summary>
    /// How long a memory change, or a ring stop, waits for requests in flight that hold the old memory
    /// before it cancels them (they complete with IOERR), and how long it then waits for the
    /// cancellations (docs/invalidation.md).
    /// </summary>
    public TimeSpan InFlightWait { get; init; } = TimeSpan.FromSeconds(5);
    public TimeSpan CancelWait { get; init; } = TimeSpan.FromSeconds(1);
}
