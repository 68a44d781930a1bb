using System.Runtime.InteropServices;

namespace SharpVhost.Interop;

/// <summary>
/// The libc calls .NET has no API for (memfd, mmap, eventfd, poll, fallocate, sched_setaffinity).
/// Everything here returns the raw result; the safe wrappers beside it turn errno into exceptions.
/// </summary>
internal static unsafe partial class Libc
{
    private const string Lib = "libc";

    public const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2;
    public const int MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
    public const uint MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;
    public const int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;
    public const short POLLIN = 1;
    public const int EINTR = 4, EAGAIN = 11;
    public const int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2, FALLOC_FL_ZERO_RANGE = 0x10;
    public static readonly nint MAP_FAILED = -1;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport(Lib, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MemfdCreate(string name, uint flags);

    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport(Lib, EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint addr, nuint length, int prot);

    [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int Eventfd(uint initval, int flags);

    [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Lib, EntryPoint = "dup", SetLastError = true)]
    public static partial int Dup(int fd);

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint nfds, int timeoutMs);

    [LibraryImport(Lib, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int Fallocate(int fd, int mode, long offset, long length);

    [LibraryImport(Lib, EntryPoint = "lseek", SetLastError = true)]
    public static partial long Lseek(int fd, long offset, int whence);

    [LibraryImport(Lib, EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chown(string path, int owner, int group);

    // Returns libc's static struct group (name, passwd, gid, members): read at once, single-threaded start-up only.
    [LibraryImport(Lib, EntryPoint = "getgrnam", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint Getgrnam(string name);

    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);

    public const int F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0x800;
    public const int F_GETFD = 1, F_SETFD = 2, FD_CLOEXEC = 1;
    public const int F_ADD_SEALS = 1033, F_GET_SEALS = 1034, F_SEAL_SEAL = 0x1, F_SEAL_SHRINK = 0x2;

    [LibraryImport(Lib, EntryPoint = "sched_setaffinity", SetLastError = true)]
    public static partial int SchedSetAffinity(int tid, nuint cpuSetSize, ulong* mask);

    [LibraryImport(Lib, EntryPoint = "sched_getaffinity", SetLastError = true)]
    public static partial int SchedGetAffinity(int tid, nuint cpuSetSize, ulong* mask);

    [LibraryImport(Lib, EntryPoint = "getpagesize")]
    public static partial int GetPageSize();

    // io_uring and vectored file I/O (IoUring, FileIo): the same numbers on x86_64 and aarch64 (asm-generic since 5.1).
    public const long SYS_io_uring_setup = 425, SYS_io_uring_enter = 426, SYS_io_uring_register = 427;

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

    [LibraryImport(Lib, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport(Lib, EntryPoint = "preadv", SetLastError = true)]
    public static partial nint Preadv(int fd, void* iov, int iovcnt, long offset);

    [LibraryImport(Lib, EntryPoint = "pwritev2", SetLastError = true)]
    public static partial nint Pwritev2(int fd, void* iov, int iovcnt, long offset, int flags);

    [LibraryImport(Lib, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int Fdatasync(int fd);

    [LibraryImport(Lib, EntryPoint = "timerfd_create", SetLastError = true)]
    public static partial int TimerfdCreate(int clockId, int flags);

    [LibraryImport(Lib, EntryPoint = "timerfd_settime", SetLastError = true)]
    public static partial int TimerfdSettime(int fd, int flags, long* newValue, long* oldValue);

    [LibraryImport(Lib, EntryPoint = "clock_gettime", SetLastError = true)]
    public static partial int ClockGettime(int clockId, long* timespec);

    [LibraryImport(Lib, EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int EpollCreate1(int flags);

    [LibraryImport(Lib, EntryPoint = "epoll_ctl", SetLastError = true)]
    public static partial int EpollCtl(int epfd, int op, int fd, void* ev);

    public const int O_RDONLY = 0, O_RDWR = 2, O_CLOEXEC = 0x80000, O_DIRECT = 0x4000;
    public const int RWF_DSYNC = 2;
    public const int CLOCK_MONOTONIC = 1, TFD_CLOEXEC = 0x80000, TFD_NONBLOCK = 0x800, TFD_TIMER_ABSTIME = 1;
    public const int EPOLL_CLOEXEC = 0x80000, EPOLL_CTL_ADD = 1, EPOLLIN = 1;
    public const int EIO = 5, EBADF = 9, ENOMEM = 12, EINVAL = 22, ENOSYS = 38, EOPNOTSUPP = 95, ECANCELED = 125;

    public static int LastErrno => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    public static IOException Error(string call) => Error(call, LastErrno);

    public static IOException Error(string call, int errno) => new($"{call} failed: {Describe(errno)}", errno);
}
