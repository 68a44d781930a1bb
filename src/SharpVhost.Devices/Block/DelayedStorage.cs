namespace SharpVhost.Devices.Block;

/// <summary>
/// Adds a fixed latency to every data request, emulating a slow disk. Crash-recovery tests use it
/// so that requests really are in flight when the backend is killed. Queues use <see cref="CreateQueueEngine"/>,
/// a <see cref="DelayEngine"/> whose requests overlap; the synchronous calls (no queue) sleep.
/// </summary>
public sealed class DelayedStorage(IBlockStorage inner, TimeSpan delay) : IBlockStorage
{
    public long Capacity => inner.Capacity;
    public bool ReadOnly => inner.ReadOnly;
    public bool SupportsDiscard => inner.SupportsDiscard;
    public string Description => $"{inner.Description}, +{delay.TotalMicroseconds} us per request";
    public IBlockStorage Inner => inner;
    public TimeSpan Delay => delay;

    /// <summary>
    /// The inner storage's queue engine behind a <see cref="DelayEngine"/>: the latency is a timer, not a
    /// sleep, so the queue's requests overlap (a synchronous inner engine, RAM or null, completes at once
    /// and its completions are held until their time).
    /// </summary>
    public IBlockQueueEngine CreateQueueEngine(int depth) => new DelayEngine(inner.CreateQueueEngine(depth), delay);

    public void Read(Span<byte> destination, long offset)
    {
        Thread.Sleep(delay);
        inner.Read(destination, offset);
    }

    public void Write(ReadOnlySpan<byte> source, long offset)
    {
        Thread.Sleep(delay);
        inner.Write(source, offset);
    }

    public void Flush() => inner.Flush();
    public void Discard(long offset, long length) => inner.Discard(offset, length);
    public void WriteZeroes(long offset, long length, bool unmap) => inner.WriteZeroes(offset, length, unmap);
    public void Dispose() => inner.Dispose();
}
