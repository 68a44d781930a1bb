using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// The driver side of a virtqueue, whatever its layout (<see cref="SplitDriverQueue"/>,
/// <see cref="PackedDriverQueue"/>): what the frontend library and device clients use. The device
/// is not trusted: used entries naming buffers that are not in flight throw <see cref="VirtqueueException"/>.
/// Not thread-safe: one thread adds and reaps at a time.
/// </summary>
public interface IDriverQueue
{
    int Size { get; }
    bool EventIndex { get; }
    /// <summary>Ring descriptors free for <see cref="TryAdd"/>.</summary>
    int FreeCount { get; }
    int InFlight { get; }

    /// <summary>Offers <paramref name="buffers"/> (readable ones first) as one chain, unpublished; <paramref name="id"/> names it in <see cref="TryGetUsed"/>.</summary>
    bool TryAdd(ReadOnlySpan<DriverBuffer> buffers, out ushort id);
    /// <summary>Offers <paramref name="buffers"/> through an indirect table at <paramref name="tableAddress"/> (16 bytes per buffer), one ring descriptor.</summary>
    bool TryAddIndirect(GuestMemory memory, ulong tableAddress, ReadOnlySpan<DriverBuffer> buffers, out ushort id);
    /// <summary>Makes everything added so far visible to the device.</summary>
    void Publish();
    /// <summary>Whether the device wants a kick for what was published since the last call.</summary>
    bool NeedsKick();
    /// <summary>Reaps one used buffer; false if none is pending.</summary>
    bool TryGetUsed(out ushort id, out uint length);
    void DisableInterrupts();
    /// <summary>Asks for an interrupt at the next used buffer; true if some are already pending (reap instead of sleeping).</summary>
    bool EnableInterrupts();
}
