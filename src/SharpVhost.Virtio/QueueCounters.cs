namespace SharpVhost.Virtio;

/// <summary>
/// Per-queue counters, written only by the queue's worker and read by anyone (metrics, tests).
/// Plain fields updated with Interlocked-free increments would tear on 32-bit only; we target 64-bit.
/// </summary>
public sealed class QueueCounters
{
    public long Requests;
    public long ReadableBytes;
    public long WritableBytes;
    public long Errors;
    public long Kicks;
    public long Interrupts;
    public long DirectBinds;
    public long CheckedBinds;
    public long DirectFallbacks;
    public long Revalidations;
    /// <summary>IOTLB misses the worker asked the frontend to resolve (ACCESS_PLATFORM only).</summary>
    public long IotlbMisses;
    /// <summary>Requests answered with an error because their I/O was cancelled (a memory change or a stop waited too long for it).</summary>
    public long CancelledRequests;
}
