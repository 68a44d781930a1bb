namespace SharpVhost.Devices.Net;

/// <summary>
/// Where a receive queue's frames come from: a backlog that other threads fill, a generator, a TAP
/// descriptor. Used only by the receive queue's worker. The queue peeks a frame, finds guest buffers
/// big enough, copies it, and only then consumes it, so a frame waits while the guest has no buffers.
/// </summary>
public interface IRxFrameSource
{
    /// <summary>Readable when frames are waiting (the queue worker polls it beside the kick); -1 for none.</summary>
    int WakeFd { get; }

    /// <summary>Called at the start of every batch of the receive queue (e.g. to clear the wake descriptor).</summary>
    void BeginBatch() { }

    /// <summary>The next frame, without removing it; false when none is waiting.</summary>
    bool TryPeek(out VirtioNetHeader header, out ReadOnlySpan<byte> frame);

    /// <summary>Removes the frame the last <see cref="TryPeek"/> returned.</summary>
    void Consume();

    /// <summary>
    /// The guest has no receive buffers right now. Sources that cannot hold frames back (a TAP
    /// descriptor stays readable) drop the peeked frame and return true; backlogs return false and wait for a kick.
    /// </summary>
    bool DropWhenNoBuffers() => false;
}
