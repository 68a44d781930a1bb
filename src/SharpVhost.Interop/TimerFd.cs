namespace SharpVhost.Interop;

/// <summary>A CLOCK_MONOTONIC timerfd, armed at absolute times with nanosecond resolution (non-blocking).</summary>
public sealed unsafe class TimerFd : IDisposable
{
    private int _fd;

    public int Fd => _fd;

    public TimerFd()
    {
        _fd = Libc.TimerfdCreate(Libc.CLOCK_MONOTONIC, Libc.TFD_CLOEXEC | Libc.TFD_NONBLOCK);
        if (_fd < 0) throw Libc.Error("timerfd_create");
    }

    /// <summary>Now on CLOCK_MONOTONIC, in nanoseconds: the clock <see cref="ArmAt"/> takes.</summary>
    public static long NowNs()
    {
        long* ts = stackalloc long[2];
        Libc.ClockGettime(Libc.CLOCK_MONOTONIC, ts);
        return ts[0] * 1_000_000_000 + ts[1];
    }

    /// <summary>Fires once at <paramref name="deadlineNs"/> (monotonic); 0 disarms. A deadline already past fires at once.</summary>
    public void ArmAt(long deadlineNs)
    {
        long* spec = stackalloc long[4]; // itimerspec: interval {0,0}, value {sec, nsec}
        spec[0] = spec[1] = 0;
        if (deadlineNs <= 0) spec[2] = spec[3] = 0;
        else { spec[2] = deadlineNs / 1_000_000_000; spec[3] = deadlineNs % 1_000_000_000; }
        if (Libc.TimerfdSettime(_fd, deadlineNs <= 0 ? 0 : Libc.TFD_TIMER_ABSTIME, spec, null) != 0) throw Libc.Error("timerfd_settime");
    }

    /// <summary>Clears a fired timer's readiness; false if it had not fired.</summary>
    public bool Consume()
    {
        ulong expirations;
        return Libc.Read(_fd, &expirations, 8) == 8;
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Close(fd);
    }
}

/// <summary>An epoll set used as one pollable descriptor: readable when any member is (several completion sources behind one fd).</summary>
public sealed unsafe class EpollSet : IDisposable
{
    private int _fd;

    public int Fd => _fd;

    public EpollSet()
    {
        _fd = Libc.EpollCreate1(Libc.EPOLL_CLOEXEC);
        if (_fd < 0) throw Libc.Error("epoll_create1");
    }

    /// <summary>Adds <paramref name="fd"/>, level-triggered for reading.</summary>
    public void Add(int fd)
    {
        // struct epoll_event is packed on x86_64 (12 bytes: u32 events, u64 data) and 16 bytes elsewhere; 16 zeroed bytes fit both.
        byte* ev = stackalloc byte[16];
        new Span<byte>(ev, 16).Clear();
        *(uint*)ev = Libc.EPOLLIN;
        if (Libc.EpollCtl(_fd, Libc.EPOLL_CTL_ADD, fd, ev) != 0) throw Libc.Error("epoll_ctl");
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Close(fd);
    }
}
