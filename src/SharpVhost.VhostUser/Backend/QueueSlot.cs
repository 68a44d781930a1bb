using SharpVhost.Interop;
using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// The session's view of one queue: the ring, its eventfds, and the vhost-user start/enable state.
/// A queue runs (has a worker) when it is started (a kick fd, or polling, arrived after the size and
/// addresses) and enabled.
/// </summary>
internal sealed class QueueSlot(int index, MetadataAccess access) : IDisposable
{
    public IDeviceQueue Queue { get; set; } = new SplitQueue(index, access);
    public int Index => index;
    public EventFd? Kick;
    public EventFd? Call;
    public EventFd? Err;
    public bool SizeSet;
    public bool AddressSet;
    public bool Started;
    public bool Polling;
    public bool Enabled;
    public QueueWorker? Worker;
    public readonly List<EventFd> RetiredErrs = [];

    public bool Running => Worker is not null;

    /// <param name="finish">The ring is being stopped or disabled by the frontend (not torn down): let the
    /// worker finish what was made available before, if its processor asks for that.</param>
    public void StopWorker(bool finish = false)
    {
        Worker?.Stop(finish);
        Worker?.Dispose();
        Worker = null;
        foreach (var fd in RetiredErrs) fd.Dispose();
        RetiredErrs.Clear();
    }

    public void Dispose()
    {
        StopWorker();
        Kick?.Dispose(); Kick = null;
        Call?.Dispose(); Call = null;
        Err?.Dispose(); Err = null;
    }
}
