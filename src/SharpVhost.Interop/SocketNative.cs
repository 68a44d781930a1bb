using System.Runtime.InteropServices;

namespace SharpVhost.Interop;

/// <summary>
/// Raw libc imports for Unix-domain sockets with SCM_RIGHTS. Only <see cref="UnixSockets"/> calls these;
/// struct layouts are those of Linux on 64-bit targets (x86_64, aarch64).
/// </summary>
internal static unsafe partial class SocketNative
{
    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;
    public const int MSG_CTRUNC = 0x8;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const short POLLIN = 0x1;
    public const short POLLOUT = 0x4;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct CMsgHdr
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>CMSG_ALIGN: control data is aligned to the size of a pointer-sized integer.</summary>
    public static int CmsgAlign(int length) => (length + sizeof(nuint) - 1) & ~(sizeof(nuint) - 1);

    /// <summary>CMSG_SPACE for <paramref name="dataLength"/> bytes of data.</summary>
    public static int CmsgSpace(int dataLength) => CmsgAlign(sizeof(CMsgHdr)) + CmsgAlign(dataLength);

    /// <summary>CMSG_LEN for <paramref name="dataLength"/> bytes of data.</summary>
    public static int CmsgLen(int dataLength) => CmsgAlign(sizeof(CMsgHdr)) + dataLength;

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint SendMsg(int socket, MsgHdr* message, int flags);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint RecvMsg(int socket, MsgHdr* message, int flags);

    [LibraryImport("libc", EntryPoint = "socketpair", SetLastError = true)]
    public static partial int SocketPair(int domain, int type, int protocol, int* fds);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);
}
