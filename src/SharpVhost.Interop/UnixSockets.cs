using System.Net.Sockets;
using System.Runtime.InteropServices;
using static SharpVhost.Interop.SocketNative;

namespace SharpVhost.Interop;

/// <summary>
/// Thrown when a peer sent more file descriptors than the receiver made room for (the kernel set
/// MSG_CTRUNC). The descriptors that did arrive have already been closed. The data bytes were still
/// received: <see cref="BytesReceived"/> says how many, so a caller can keep its stream in step.
/// </summary>
public sealed class FileDescriptorOverflowException(string message, int bytesReceived) : IOException(message)
{
    /// <summary>Data bytes that the failed receive did place in the buffer (0 = end of stream).</summary>
    public int BytesReceived { get; } = bytesReceived;
}

/// <summary>
/// Send and receive bytes together with file descriptors (SCM_RIGHTS) over a connected Unix-domain
/// stream socket. .NET has no managed API for this, so this is the one safe wrapper over
/// <c>sendmsg</c>/<c>recvmsg</c>. Works on blocking and non-blocking sockets alike (on EAGAIN it
/// waits with <c>poll</c>), retries on EINTR, and never leaks a received descriptor.
/// </summary>
public static unsafe class UnixSockets
{
    /// <summary>
    /// Sends all of <paramref name="data"/>; <paramref name="fds"/> travel with the first byte.
    /// The caller keeps ownership of <paramref name="fds"/> (the kernel duplicates them) and must keep
    /// them open for the duration of the call. Returns the number of bytes sent (= data.Length).
    /// </summary>
    /// <exception cref="SocketException">The send failed (peer gone, timeout, ...).</exception>
    public static int SendWithFds(Socket socket, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (data.IsEmpty && !fds.IsEmpty)
            throw new ArgumentException("File descriptors need at least one data byte to travel with.", nameof(fds));

        SafeHandle handle = socket.SafeHandle;
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            int controlLength = fds.IsEmpty ? 0 : CmsgSpace(fds.Length * sizeof(int));
            byte* control = stackalloc byte[Math.Max(controlLength, 1)];
            int sent = 0;
            fixed (byte* dataPtr = data)
            {
                while (sent < data.Length)
                {
                    IoVec iov = new() { Base = dataPtr + sent, Length = (nuint)(data.Length - sent) };
                    MsgHdr msg = new() { Iov = &iov, IovLength = 1 };
                    if (sent == 0 && controlLength > 0)
                    {
                        new Span<byte>(control, controlLength).Clear();
                        var cmsg = (CMsgHdr*)control;
                        cmsg->Length = (nuint)CmsgLen(fds.Length * sizeof(int));
                        cmsg->Level = SOL_SOCKET;
                        cmsg->Type = SCM_RIGHTS;
                        fds.CopyTo(new Span<int>(control + CmsgAlign(sizeof(CMsgHdr)), fds.Length));
                        msg.Control = control;
                        msg.ControlLength = (nuint)controlLength;
                    }

                    nint n = SendMsg(fd, &msg, MSG_NOSIGNAL);
                    if (n < 0)
                    {
                        int errno = Marshal.GetLastPInvokeError();
                        if (errno == EINTR) continue;
                        if (errno == EAGAIN) { WaitFor(fd, POLLOUT, socket.SendTimeout); continue; }
                        throw ErrnoException(errno);
                    }
                    sent += (int)n;
                }
            }
            return sent;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>
    /// One <c>recvmsg</c>: reads up to <paramref name="buffer"/>.Length bytes and any descriptors that
    /// came with them into <paramref name="fdsOut"/> (opened with close-on-exec). The caller owns the
    /// <paramref name="fdCount"/> descriptors returned and must close them (see <see cref="CloseFd"/>).
    /// Returns the number of bytes read; 0 means the peer closed the connection.
    /// </summary>
    /// <exception cref="FileDescriptorOverflowException">More descriptors arrived than
    /// <paramref name="fdsOut"/> can hold; the ones received were closed.</exception>
    /// <exception cref="SocketException">The receive failed or timed out.</exception>
    public static int ReceiveWithFds(Socket socket, Span<byte> buffer, Span<int> fdsOut, out int fdCount)
    {
        ArgumentNullException.ThrowIfNull(socket);
        fdCount = 0;
        SafeHandle handle = socket.SafeHandle;
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            int controlLength = fdsOut.IsEmpty ? 0 : CmsgSpace(fdsOut.Length * sizeof(int));
            // Aligned to 8 because the kernel writes cmsghdr structures (size_t first) into it.
            ulong* control = stackalloc ulong[Math.Max(1, (controlLength + 7) / 8)];
            fixed (byte* dataPtr = buffer)
            {
                while (true)
                {
                    IoVec iov = new() { Base = dataPtr, Length = (nuint)buffer.Length };
                    MsgHdr msg = new()
                    {
                        Iov = &iov,
                        IovLength = 1,
                        Control = controlLength > 0 ? control : null,
                        ControlLength = (nuint)controlLength,
                    };
                    nint n = RecvMsg(fd, &msg, MSG_CMSG_CLOEXEC);
                    if (n < 0)
                    {
                        int errno = Marshal.GetLastPInvokeError();
                        if (errno == EINTR) continue;
                        if (errno == EAGAIN) { WaitFor(fd, POLLIN, socket.ReceiveTimeout); continue; }
                        throw ErrnoException(errno);
                    }

                    int overflow = CollectFds(&msg, fdsOut, out fdCount);
                    if ((msg.Flags & MSG_CTRUNC) != 0 || overflow > 0)
                    {
                        CloseAll(fdsOut[..fdCount]);
                        fdCount = 0;
                        throw new FileDescriptorOverflowException(
                            $"Peer sent more file descriptors than the {fdsOut.Length} expected; the received ones were closed.", (int)n);
                    }
                    return (int)n;
                }
            }
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    /// <summary>Closes a raw descriptor (for descriptors received and then rejected). Ignores negative values.</summary>
    public static void CloseFd(int fd)
    {
        if (fd < 0) return;
        // Linux closes the descriptor even when close() reports EINTR, so never retry.
        _ = Close(fd);
    }

    /// <summary>Creates a connected pair of Unix stream sockets (close-on-exec), e.g. for the
    /// back-end request channel (SET_BACKEND_REQ_FD) or for tests.</summary>
    public static (Socket First, Socket Second) CreatePair()
    {
        int* fds = stackalloc int[2];
        if (SocketPair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
            throw ErrnoException(Marshal.GetLastPInvokeError());
        return (FromFd(fds[0]), FromFd(fds[1]));
    }

    /// <summary>Wraps a socket descriptor the caller owns (e.g. one received over SCM_RIGHTS) in a
    /// <see cref="Socket"/> that now owns it.</summary>
    public static Socket FromFd(int fd) => new(new SafeSocketHandle((IntPtr)fd, ownsHandle: true));

    private static int CollectFds(MsgHdr* msg, Span<int> fdsOut, out int fdCount)
    {
        fdCount = 0;
        int overflow = 0;
        if (msg->Control == null) return 0;
        byte* start = (byte*)msg->Control;
        byte* end = start + (long)msg->ControlLength;
        byte* p = start;
        int headerSize = CmsgAlign(sizeof(CMsgHdr));
        while (p + sizeof(CMsgHdr) <= end)
        {
            var cmsg = (CMsgHdr*)p;
            long length = (long)cmsg->Length;
            if (length < sizeof(CMsgHdr) || p + length > end) break;
            if (cmsg->Level == SOL_SOCKET && cmsg->Type == SCM_RIGHTS)
            {
                int count = (int)((length - headerSize) / sizeof(int));
                int* data = (int*)(p + headerSize);
                for (int i = 0; i < count; i++)
                {
                    if (fdCount < fdsOut.Length) fdsOut[fdCount++] = data[i];
                    else { CloseFd(data[i]); overflow++; }
                }
            }
            p += CmsgAlign((int)length);
        }
        return overflow;
    }

    // SocketException's int constructor expects a SocketError code, not an errno: translate the common ones.
    private static SocketException ErrnoException(int errno)
    {
        SocketError error = errno switch
        {
            32 => SocketError.Shutdown,            // EPIPE
            104 => SocketError.ConnectionReset,   // ECONNRESET
            107 => SocketError.NotConnected,      // ENOTCONN
            9 => SocketError.OperationAborted,    // EBADF: the socket was closed under us
            110 => SocketError.TimedOut,          // ETIMEDOUT
            24 or 23 => SocketError.TooManyOpenSockets, // EMFILE, ENFILE
            _ => SocketError.SocketError,
        };
        return new SocketException((int)error, $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }

    private static void CloseAll(ReadOnlySpan<int> fds)
    {
        foreach (int fd in fds) CloseFd(fd);
    }

    private static void WaitFor(int fd, short events, int timeoutMs)
    {
        PollFd pfd = new() { Fd = fd, Events = events };
        int timeout = timeoutMs <= 0 ? -1 : timeoutMs;
        while (true)
        {
            int r = Poll(&pfd, 1, timeout);
            if (r > 0) return;
            if (r == 0) throw new SocketException((int)SocketError.TimedOut);
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) throw ErrnoException(errno);
        }
    }
}
