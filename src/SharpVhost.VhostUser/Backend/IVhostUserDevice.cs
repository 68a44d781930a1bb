using SharpVhost.Memory;
using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// What a virtio device (block, net) gives the device-agnostic backend session: its features, its
/// queues, its config space, and a processor per queue. The session owns the protocol, memory and
/// rings; the device only turns descriptor chains into I/O.
/// </summary>
public interface IVhostUserDevice
{
    /// <summary>"block" or "net": used in logs and metrics.</summary>
    string Kind { get; }

    /// <summary>Virtio feature bits the device offers (device bits plus the ring bits it supports).</summary>
    ulong Features { get; }

    /// <summary>Protocol features beyond those the session always offers (e.g. CONFIG, MQ, MTU).</summary>
    ulong ExtraProtocolFeatures { get; }

    /// <summary>How many queues the device has at most (GET_QUEUE_NUM).</summary>
    int QueueCount { get; }

    /// <summary>The virtio config space (GET_CONFIG reads from it).</summary>
    ReadOnlySpan<byte> Config { get; }

    /// <summary>A driver write to config space (SET_CONFIG); false to reject it.</summary>
    bool WriteConfig(uint offset, ReadOnlySpan<byte> data);

    /// <summary>The features the frontend accepted (SET_FEATURES).</summary>
    void OnFeaturesNegotiated(ulong features);

    /// <summary>Creates the object that handles one queue's chains; called when the queue starts.</summary>
    IQueueProcessor CreateProcessor(int queueIndex);

    /// <summary>The same, knowing the ring's size (how many requests the queue may have in flight at once).</summary>
    IQueueProcessor CreateProcessor(int queueIndex, int queueSize) => CreateProcessor(queueIndex);
}

/// <summary>Handles the chains of one queue, on that queue's worker thread.</summary>
public interface IQueueProcessor
{
    /// <summary>
    /// Pops and completes up to <paramref name="budget"/> chains (adding used elements; the worker
    /// publishes and interrupts). Runs inside a memory read section with <paramref name="memory"/>
    /// bound to <paramref name="queue"/>. Returns how many chains it handled.
    /// </summary>
    int Process(IDeviceQueue queue, GuestMemory memory, int budget);

    /// <summary>
    /// A descriptor that becomes readable when the processor has work that did not come from a kick
    /// (e.g. frames waiting for a net receive queue); the worker wakes on it as on a kick. The
    /// processor consumes it. -1 when there is none.
    /// </summary>
    int WakeFd => -1;

    /// <summary>
    /// Read after <see cref="Process"/>: true when that pass stopped because the processor itself had
    /// nothing to do (a net receive queue with no frame waiting), not because the ring ran dry or the
    /// budget ran out. The worker then re-enables kicks and sleeps even though the ring still holds
    /// available buffers: they are not work until <see cref="WakeFd"/> (or a kick) says so. A processor
    /// that reports this must have armed <see cref="WakeFd"/> before its last look for work, so that
    /// work arriving after that look wakes the worker.
    /// </summary>
    bool IdleUntilWake => false;

    /// <summary>
    /// Whether the chains the driver made available before the queue is stopped or disabled
    /// (GET_VRING_BASE, SET_VRING_ENABLE 0) are to be processed before the worker stops: true for a net
    /// transmit queue (the frames were sent while the ring ran; vhost-user says a disabled ring still
    /// processes TX), false where a stop must take effect at once (a net receive queue must not supply
    /// new frames once disabled).
    /// </summary>
    bool FinishOnStop => false;

    // ---- requests that outlive a pass (asynchronous block I/O) ----

    /// <summary>Chains popped whose completion is not yet published; the worker stops only once this is 0 (or past its bound).</summary>
    int InFlight => 0;

    /// <summary>
    /// The oldest memory generation (<see cref="GuestMemory.Generation"/>) an in-flight request was started
    /// under, 0 for none: the worker pins it (<see cref="MemoryReader.SetPin"/>) so that memory it points into
    /// stays mapped until the request completes.
    /// </summary>
    long PinnedGeneration => 0;

    /// <summary>
    /// Publishes requests that completed (status, used elements) without popping new chains: a stopping
    /// worker's last passes, or while it waits for a translation. With a null queue (broken, or its ring
    /// out of reach) completed requests are released unanswered. Returns how many completed.
    /// </summary>
    int Complete(IDeviceQueue? queue) => 0;

    /// <summary>Asks for in-flight requests started under a generation below <paramref name="generation"/> to end
    /// soon (they then complete with an error); long.MaxValue for all.</summary>
    void CancelInFlight(long generation) { }
}
