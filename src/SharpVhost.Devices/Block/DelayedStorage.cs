namespace SharpVhost.Devices.Block;

/// <summary>
/// Adds a fixed latency to every data request, emulating a slow disk. Crash-recovery tests use it
/// so that requests really are in flight when the backend is killed. The synchronous calls sleep (the
/// request-at-a-time path); <see cref="CreateQueueEngine"/> gives the asynchronous form, a
/// <see cref="DelayEngine"/> whose requests overlap.
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
    /// The inner storage's queue engine behind a <see cref="DelayEngine"/>. Until every storage has
    /// engines (IBlockStorage.CreateQueueEngine), only a file's does.
    /// </summary>
    public IBlockQueueEngine CreateQueueEngine(int depth) => inner switch
    {
        FileStorage file => new DelayEngine(file.CreateQueueEngine(depth), delay),
        _ => throw new NotSupportedException($"{inner.Description} has no asynchronous engine yet"),
    };

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
    /// <summary>Synchronous: the delay is a sleep on the queue's thread (one request at a time per queue).</summary>
    public IBlockQueueEngine CreateQueueEngine(int depth) => new SynchronousQueueEngine(this, depth);
    public void Dispose() => inner.Dispose();
}
