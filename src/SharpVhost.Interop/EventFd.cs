namespace SharpVhost.Interop;

/// <summary>
/// An eventfd: the kick and call doorbells of a virtqueue. Owns its descriptor.
/// </summary>
public sealed unsafe class EventFd : IDisposable
{
    private int _fd;

    public int Fd => _fd;

    private EventFd(int fd) => _fd = fd;

    public static EventFd Create(bool nonBlocking = false)
    {
        int fd = Libc.Eventfd(0, Libc.EFD_CLOEXEC | (nonBlocking ? Libc.EFD_NONBLOCK : 0));
        if (fd < 0) throw Libc.Error("eventfd");
        return new EventFd(fd);
    }

    /// <summary>Wraps a descriptor received from a peer; takes ownership.</summary>
    /// <remarks>Made non-blocking so that <see cref="TryConsume"/> never stalls a worker.</remarks>
    public static EventFd Adopt(int fd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        int flags = Libc.Fcntl(fd, Libc.F_GETFL, 0);
        if (flags >= 0) Libc.Fcntl(fd, Libc.F_SETFL, flags | Libc.O_NONBLOCK);
        return new EventFd(fd);
    }

    /// <summary>Adds one to the counter, waking a waiter.</summary>
    public void Signal()
    {
        ulong one = 1;
        while (Libc.Write(_fd, &one, 8) < 0)
        {
            int errno = Libc.LastErrno;
            if (errno == Libc.EINTR) continue;
            if (errno == Libc.EAGAIN) return; // counter saturated: the peer is already woken
            throw Libc.Error("eventfd write", errno);
        }
    }

    /// <summary>Reads and clears the counter without blocking; false if it was zero (non-blocking fds only).</summary>
    public bool TryConsume()
    {
        ulong value;
        while (true)
        {
            nint read = Libc.Read(_fd, &value, 8);
            if (read == 8) return true;
            // An eventfd reads exactly 8 bytes; anything else is some other fd the frontend passed (a
            // pipe, a file): errno means nothing then.
            if (read >= 0) throw new IOException($"eventfd read returned {read} bytes instead of 8: the descriptor is not an eventfd");
            int errno = Libc.LastErrno;
            if (errno == Libc.EINTR) continue;
            if (errno == Libc.EAGAIN) return false;
            throw Libc.Error("eventfd read", errno);
        }
    }

    /// <summary>
    /// Waits until one of the descriptors is readable or the timeout passes (-1 waits forever).
    /// Returns the index of the first readable one, or -1 on timeout. Does not consume.
    /// </summary>
    public static int WaitAny(ReadOnlySpan<int> fds, int timeoutMs)
    {
        Span<Libc.PollFd> polls = stackalloc Libc.PollFd[fds.Length];
        for (int i = 0; i < fds.Length; i++) polls[i] = new Libc.PollFd { Fd = fds[i], Events = Libc.POLLIN };
        while (true)
        {
            int n;
            fixed (Libc.PollFd* p = polls) n = Libc.Poll(p, (nuint)polls.Length, timeoutMs);
            if (n < 0)
            {
                int errno = Libc.LastErrno;
                if (errno == Libc.EINTR) continue;
                throw Libc.Error("poll", errno);
            }
            if (n == 0) return -1;
            for (int i = 0; i < polls.Length; i++) if (polls[i].Revents != 0) return i;
            return -1;
        }
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Close(fd);
    }
}
