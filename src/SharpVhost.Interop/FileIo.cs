using Microsoft.Win32.SafeHandles;

namespace SharpVhost.Interop;

/// <summary>
/// Blocking vectored file I/O for the thread-pool engine, and open(2) with the flags .NET cannot pass
/// (FileOptions has no O_DIRECT on Linux: a cast to it is silently dropped). Results are bytes or -errno.
/// </summary>
public static unsafe class FileIo
{
    /// <summary>Opens <paramref name="path"/> with open(2), O_CLOEXEC and, when asked, O_DIRECT really passed.</summary>
    public static SafeFileHandle Open(string path, bool readOnly, bool direct)
    {
        int flags = (readOnly ? Libc.O_RDONLY : Libc.O_RDWR) | Libc.O_CLOEXEC | (direct ? Libc.O_DIRECT : 0);
        int fd;
        do fd = Libc.Open(path, flags, 0); while (fd < 0 && Libc.LastErrno == Libc.EINTR);
        if (fd < 0)
        {
            int errno = Libc.LastErrno;
            if (errno == 2) throw new FileNotFoundException($"open {path}: {Libc.Describe(errno)}", path);
            if (errno == 13) throw new UnauthorizedAccessException($"open {path}: {Libc.Describe(errno)}");
            throw Libc.Error($"open {path}{(direct ? " (O_DIRECT)" : "")}", errno);
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    public static long Preadv(int fd, nint iovecs, int count, long offset) => Result(Libc.Preadv(fd, (void*)iovecs, count, offset));

    public static long Pwritev(int fd, nint iovecs, int count, long offset, bool dsync) =>
        Result(Libc.Pwritev2(fd, (void*)iovecs, count, offset, dsync ? Libc.RWF_DSYNC : 0));

    public static int Fdatasync(int fd) => (int)Result(Libc.Fdatasync(fd));

    public static int Fallocate(int fd, int mode, long offset, long length) => (int)Result(Libc.Fallocate(fd, mode, offset, length));

    private static long Result(nint n) => n >= 0 ? n : -Libc.LastErrno;

    public const int EIO = Libc.EIO, EINVAL = Libc.EINVAL, ECANCELED = Libc.ECANCELED, EOPNOTSUPP = Libc.EOPNOTSUPP, EINTR = Libc.EINTR;
}
