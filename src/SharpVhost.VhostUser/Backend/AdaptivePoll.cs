using System.Diagnostics;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// How long a queue worker polls its ring before it sleeps on the kick eventfd. Sleeping and being
/// woken costs a wake-up (about 15 µs on a small VM) on every request batch; polling costs CPU. The
/// window adapts the way QEMU's event loop does for its iothreads: it grows while the driver comes
/// back soon after the ring ran dry (polling a little longer would have caught it), and shrinks while
/// it stays away longer than the maximum (polling would only burn the core). It starts at the maximum:
/// a driver that itself re-checks for completions before sleeping (ours, Linux's virtio drivers under
/// load) then never needs a wake-up on either side, a state that a window starting at zero may not
/// reach, because a driver that is made to sleep comes back too late to make the window grow.
/// </summary>
public sealed class AdaptivePoll
{
    /// <summary>The window polling restarts with once it looks worth it again; below it, no polling.</summary>
    public static readonly TimeSpan Initial = TimeSpan.FromMicroseconds(4);

    private readonly long _maxTicks;
    private readonly long _initialTicks = Math.Max(1, (long)(Initial.TotalSeconds * Stopwatch.Frequency));

    public AdaptivePoll(TimeSpan max)
    {
        _maxTicks = Math.Max(0, (long)(max.TotalSeconds * Stopwatch.Frequency));
        WindowTicks = _maxTicks;
    }

    /// <summary>The current window, in <see cref="Stopwatch"/> ticks (0: do not poll).</summary>
    public long WindowTicks { get; private set; }

    public TimeSpan Window => TimeSpan.FromSeconds((double)WindowTicks / Stopwatch.Frequency);

    /// <summary>
    /// Records an idle stretch that polling did not cover: the ring stayed empty for the whole window and
    /// then <paramref name="blockedTicks"/> more in the sleep before the next kick.
    /// </summary>
    public void Slept(long blockedTicks)
    {
        if (_maxTicks <= 0) return;
        if (WindowTicks + blockedTicks <= _maxTicks)
            WindowTicks = WindowTicks == 0 ? Math.Min(_initialTicks, _maxTicks) : Math.Min(WindowTicks * 2, _maxTicks);
        else
            WindowTicks = WindowTicks / 2 < _initialTicks ? 0 : WindowTicks / 2;
    }
}
