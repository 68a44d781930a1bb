namespace SharpVhost.Memory;

/// <summary>
/// One worker's slot in the grace-period protocol. A worker enters a section before it touches guest
/// memory and leaves it when done with the batch; while inside, the snapshot it was handed (and every
/// pointer derived from it) stays mapped. Not reentrant; one thread per reader.
/// </summary>
public sealed class MemoryReader : IDisposable
{
    internal const long Outside = 0;
    private readonly GuestMemoryDomain _domain;
    private long _activeGeneration = Outside;

    internal MemoryReader(GuestMemoryDomain domain) => _domain = domain;

    internal long ActiveGeneration => Volatile.Read(ref _activeGeneration);

    public bool IsInside => ActiveGeneration != Outside;

    /// <summary>
    /// Announces the generation we are about to use, then checks it is still current. If a change
    /// was published in between we retry, so the control path's wait can never miss us.
    /// </summary>
    public GuestMemory Enter()
    {
        if (IsInside) throw new InvalidOperationException("memory read sections do not nest");
        while (true)
        {
            var snapshot = _domain.Current;
            // Generation 0 (the empty snapshot) still has to be visible as "inside": use -1 for it.
            Interlocked.Exchange(ref _activeGeneration, snapshot.Generation == 0 ? -1 : snapshot.Generation);
            if (ReferenceEquals(_domain.Current, snapshot)) return snapshot;
        }
    }

    /// <summary>Leaves the section: the control path may now unmap what this worker saw.</summary>
    public void Exit() => Volatile.Write(ref _activeGeneration, Outside);

    public void Dispose()
    {
        Exit();
        _domain.Unregister(this);
    }
}
