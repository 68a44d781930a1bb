using Microsoft.Win32.SafeHandles;

namespace SharpVhost.Interop;

/// <summary>Creates and inspects file descriptors that back guest memory.</summary>
public static class FileDescriptors
{
    /// <summary>An anonymous shared-memory file (memfd) of <paramref name="size"/> bytes.</summary>
    public static SafeFileHandle CreateMemfd(string name, long size)
    {
        int fd = Libc.MemfdCreate(name, Libc.MFD_CLOEXEC | Libc.MFD_ALLOW_SEALING);
        if (fd < 0) throw Libc.Error("memfd_create");
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (Libc.Ftruncate(fd, size) != 0)
        {
            var error = Libc.Error("ftruncate");
            handle.Dispose();
            throw error;
        }
        return handle;
    }

    /// <summary>
    /// Makes sure the file behind <paramref name="fd"/> can no longer shrink, so that a mapping of it
    /// stays backed: a peer that truncates a file we have mapped makes our next access to the cut
    /// pages raise SIGBUS, which ends a .NET process. True if the file carries F_SEAL_SHRINK (already,
    /// as QEMU's sealed memfds do, or added now); false if it cannot be sealed (a plain or hugetlbfs
    /// file, a memfd created without sealing, or one whose seals are themselves sealed).
    /// Seal before checking the size: a size checked first could shrink in between.
    /// </summary>
    public static bool SealAgainstShrinking(SafeFileHandle fd)
    {
        int raw = (int)fd.DangerousGetHandle();
        int seals = Libc.Fcntl(raw, Libc.F_GET_SEALS, 0);
        if (seals < 0) return false; // EINVAL: not a file that supports sealing
        if ((seals & Libc.F_SEAL_SHRINK) != 0) return true;
        return (seals & Libc.F_SEAL_SEAL) == 0 && Libc.Fcntl(raw, Libc.F_ADD_SEALS, Libc.F_SEAL_SHRINK) == 0;
    }

    /// <summary>Takes ownership of a raw descriptor (e.g. one received over SCM_RIGHTS).</summary>
    public static SafeFileHandle Own(int fd) => new(fd, ownsHandle: true);

    /// <summary>The descriptor's size as seen by lseek(SEEK_END): works for memfd, hugetlbfs and plain files.</summary>
    public static long SizeOf(SafeFileHandle fd)
    {
        long size = Libc.Lseek((int)fd.DangerousGetHandle(), 0, 2 /* SEEK_END */);
        if (size < 0) throw Libc.Error("lseek");
        return size;
    }

    /// <summary>Deallocates a byte range of a file while keeping its size (DISCARD).</summary>
    public static void PunchHole(SafeFileHandle fd, long offset, long length)
    {
        if (Libc.Fallocate((int)fd.DangerousGetHandle(), Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset, length) != 0)
            throw Libc.Error("fallocate(PUNCH_HOLE)");
    }

    /// <summary>Zeroes a byte range, deallocating it when <paramref name="unmap"/> is set (WRITE_ZEROES).</summary>
    public static bool TryZeroRange(SafeFileHandle fd, long offset, long length, bool unmap)
    {
        int mode = unmap ? Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE : Libc.FALLOC_FL_ZERO_RANGE | Libc.FALLOC_FL_KEEP_SIZE;
        return Libc.Fallocate((int)fd.DangerousGetHandle(), mode, offset, length) == 0;
    }

    public static int PageSize { get; } = Libc.GetPageSize();
}
