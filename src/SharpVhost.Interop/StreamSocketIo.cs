using System.Runtime.InteropServices;

namespace SharpVhost.Interop;

/// <summary>One piece of a scatter-gather transfer (struct iovec).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct IoSlice
{
    public nint Base;
    public nuint Length;

    public IoSlice(nint address, nuint length)
    {
        Base = address;
        Length = length;
    }
}

public enum TransferStatus
{
    Done,
    /// <summary>The peer closed the stream (EOF on receive).</summary>
    Closed,
    /// <summary>No progress for the whole timeout.</summary>
    TimedOut,
    /// <summary>The socket failed; the errno says why.</summary>
    Failed,
}

/// <summary>
/// Scatter-gather transfers on a non-blocking stream socket: sendmsg/recvmsg over an iovec list that
/// points straight at the caller's memory (guest buffers), retried until all of it has moved, waiting in
/// poll(2) for readiness with a bound on how long no byte may move. No allocation.
/// </summary>
public static unsafe class StreamSocketIo
{
    public const int ETIMEDOUT = 110, ECONNRESET = 104, EPIPE = 32, EIO = 5, EINVAL = 22, ECANCELED = 125;

    public static string Describe(int errno) => Libc.Describe(errno);

    /// <summary>Sends every byte that <paramref name="iov"/> describes; the entries are advanced in place.</summary>
    public static TransferStatus SendAll(int fd, Span<IoSlice> iov, int timeoutMs, out int errno)
        => Transfer(fd, iov, timeoutMs, send: true, out errno);

    /// <summary>Fills every byte that <paramref name="iov"/> describes; the entries are advanced in place.</summary>
    public static TransferStatus ReceiveAll(int fd, Span<IoSlice> iov, int timeoutMs, out int errno)
        => Transfer(fd, iov, timeoutMs, send: false, out errno);

    /// <summary>Waits until <paramref name="fd"/> is readable (or hung up); false when the timeout passed first.</summary>
    public static bool WaitReadable(int fd, int timeoutMs) => Wait(fd, SocketNative.POLLIN, timeoutMs);

    private static TransferStatus Transfer(int fd, Span<IoSlice> iov, int timeoutMs, bool send, out int errno)
    {
        errno = 0;
        int first = 0;
        while (first < iov.Length && iov[first].Length == 0) first++;
        while (first < iov.Length)
        {
            int count = Math.Min(iov.Length - first, 1024); // IOV_MAX
            nint n;
            fixed (IoSlice* p = &iov[first])
            {
                var message = new SocketNative.MsgHdr { Iov = (SocketNative.IoVec*)p, IovLength = (nuint)count };
                n = send ? SocketNative.SendMsg(fd, &message, SocketNative.MSG_NOSIGNAL) : SocketNative.RecvMsg(fd, &message, 0);
            }
            if (n < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                if (e == SocketNative.EINTR) continue;
                if (e == SocketNative.EAGAIN)
                {
                    if (!Wait(fd, send ? SocketNative.POLLOUT : SocketNative.POLLIN, timeoutMs)) { errno = ETIMEDOUT; return TransferStatus.TimedOut; }
                    continue;
                }
                errno = e;
                return TransferStatus.Failed;
            }
            if (n == 0 && !send) return TransferStatus.Closed;
            nuint moved = (nuint)n;
            while (moved > 0 && first < iov.Length)
            {
                ref var v = ref iov[first];
                nuint take = moved < v.Length ? moved : v.Length;
                v.Base += (nint)take;
                v.Length -= take;
                moved -= take;
                if (v.Length == 0) first++;
            }
            while (first < iov.Length && iov[first].Length == 0) first++;
        }
        return TransferStatus.Done;
    }

    private static bool Wait(int fd, short events, int timeoutMs)
    {
        var poll = new SocketNative.PollFd { Fd = fd, Events = events };
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        while (true)
        {
            int wait = timeoutMs < 0 ? -1 : (int)Math.Max(0, deadline - Environment.TickCount64);
            int n = SocketNative.Poll(&poll, 1, wait);
            if (n > 0) return true; // readable, writable, or an error/hang-up the next call reports
            if (n == 0) return false;
            if (Marshal.GetLastPInvokeError() != SocketNative.EINTR) return true; // let the transfer report it
        }
    }
}
