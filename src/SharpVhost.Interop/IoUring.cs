using System.Runtime.InteropServices;

namespace SharpVhost.Interop;

/// <summary>
/// One io_uring instance by hand (no NuGet package provides it): io_uring_setup, the SQ ring, CQ ring and
/// SQE array mapped into this process, io_uring_enter to submit, and an eventfd registered so that a
/// completion makes it readable. Single-threaded: one owner prepares, submits and reaps.
/// </summary>
/// <remarks>
/// The kernel reads the SQ tail and writes the SQ head and CQ tail concurrently with us, so the shared
/// indices are read with acquire and written with release (Volatile), as liburing's smp_load_acquire /
/// smp_store_release do: an SQE must be fully written before the tail that publishes it, and a CQE must
/// be read before the head that gives its slot back.
/// </remarks>
public sealed unsafe class IoUring : IDisposable
{
    public const byte OpNop = 0, OpReadv = 1, OpWritev = 2, OpFsync = 3, OpAsyncCancel = 14, OpFallocate = 17;
    public const byte SqeIoDrain = 2;
    public const uint FsyncDatasync = 1;
    public const int FallocPunchHole = Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE;
    public const int FallocZeroRange = Libc.FALLOC_FL_ZERO_RANGE | Libc.FALLOC_FL_KEEP_SIZE;
    public const int RwfDsync = Libc.RWF_DSYNC;

    private const uint FeatSingleMmap = 1;
    private const long OffSqRing = 0, OffCqRing = 0x8000000, OffSqes = 0x10000000;
    private const uint EnterGetEvents = 1;
    private const uint RegisterEventfd = 4;

    [StructLayout(LayoutKind.Sequential)]
    private struct SqringOffsets { public uint Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1; public ulong UserAddr; }

    [StructLayout(LayoutKind.Sequential)]
    private struct CqringOffsets { public uint Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1; public ulong UserAddr; }

    [StructLayout(LayoutKind.Sequential)]
    private struct Params
    {
        public uint SqEntries, CqEntries, Flags, SqThreadCpu, SqThreadIdle, Features, WqFd, Resv0, Resv1, Resv2;
        public SqringOffsets SqOff;
        public CqringOffsets CqOff;
    }

    /// <summary>struct io_uring_sqe (64 bytes).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    private struct Sqe
    {
        [FieldOffset(0)] public byte Opcode;
        [FieldOffset(1)] public byte Flags;
        [FieldOffset(2)] public ushort IoPrio;
        [FieldOffset(4)] public int Fd;
        [FieldOffset(8)] public ulong Off;
        [FieldOffset(16)] public ulong Addr;
        [FieldOffset(24)] public uint Len;
        [FieldOffset(28)] public uint OpFlags;
        [FieldOffset(32)] public ulong UserData;
        [FieldOffset(40)] public ulong Pad0;
        [FieldOffset(48)] public ulong Pad1;
        [FieldOffset(56)] public ulong Pad2;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Cqe { public ulong UserData; public int Res; public uint Flags; }

    private int _fd;
    private readonly EventFd _eventFd;
    private readonly nint _sqRing, _cqRing, _sqes;
    private readonly nuint _sqRingSize, _cqRingSize, _sqesSize;
    private readonly uint* _sqHead, _sqTail, _sqArray, _cqHead, _cqTail;
    private readonly Cqe* _cqes;
    private readonly uint _sqMask, _cqMask;
    private uint _sqLocalTail; // SQEs prepared, published to the kernel at Submit
    private uint _sqSubmitted; // the tail the kernel has been told about

    public uint SqEntries { get; }
    public uint CqEntries { get; }
    /// <summary>The registered eventfd (non-blocking): readable once a completion is posted.</summary>
    public int CompletionFd => _eventFd.Fd;
    /// <summary>SQEs prepared and not yet submitted.</summary>
    public uint Pending => _sqLocalTail - _sqSubmitted;

    private IoUring(int fd, in Params p, EventFd eventFd)
    {
        _fd = fd;
        _eventFd = eventFd;
        SqEntries = p.SqEntries;
        CqEntries = p.CqEntries;
        _sqRingSize = p.SqOff.Array + p.SqEntries * 4;
        _cqRingSize = p.CqOff.Cqes + p.CqEntries * (uint)sizeof(Cqe);
        bool single = (p.Features & FeatSingleMmap) != 0;
        if (single) _sqRingSize = _cqRingSize = Math.Max(_sqRingSize, _cqRingSize);
        _sqRing = Map(_sqRingSize, OffSqRing);
        _cqRing = single ? _sqRing : Map(_cqRingSize, OffCqRing);
        _sqesSize = p.SqEntries * (uint)sizeof(Sqe);
        _sqes = Map(_sqesSize, OffSqes);
        _sqHead = (uint*)(_sqRing + (nint)p.SqOff.Head);
        _sqTail = (uint*)(_sqRing + (nint)p.SqOff.Tail);
        _sqArray = (uint*)(_sqRing + (nint)p.SqOff.Array);
        _sqMask = *(uint*)(_sqRing + (nint)p.SqOff.RingMask);
        _cqHead = (uint*)(_cqRing + (nint)p.CqOff.Head);
        _cqTail = (uint*)(_cqRing + (nint)p.CqOff.Tail);
        _cqMask = *(uint*)(_cqRing + (nint)p.CqOff.RingMask);
        _cqes = (Cqe*)(_cqRing + (nint)p.CqOff.Cqes);
        _sqLocalTail = _sqSubmitted = *_sqTail;
        // The SQ array maps ring positions to SQE indices; an identity map, filled once.
        for (uint i = 0; i < p.SqEntries; i++) _sqArray[i] = i;
    }

    private nint Map(nuint size, long offset)
    {
        nint address = Libc.Mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | 0x8000 /* MAP_POPULATE */, _fd, offset);
        if (address == Libc.MAP_FAILED) throw Libc.Error("mmap(io_uring)");
        return address;
    }

    /// <summary>
    /// Sets up a ring of at least <paramref name="entries"/> submission entries (the completion ring is
    /// twice that). Returns null with the errno when the kernel refuses (ENOSYS: no io_uring; EPERM:
    /// kernel.io_uring_disabled or a seccomp filter), so the caller can fall back.
    /// </summary>
    public static IoUring? TryCreate(uint entries, out int errno)
    {
        var p = new Params();
        long fd = Libc.Syscall(Libc.SYS_io_uring_setup, entries, (long)&p, 0, 0, 0, 0);
        if (fd < 0) { errno = Libc.LastErrno; return null; }
        EventFd? eventFd = null;
        try
        {
            eventFd = EventFd.Create(nonBlocking: true);
            int efd = eventFd.Fd;
            if (Libc.Syscall(Libc.SYS_io_uring_register, fd, RegisterEventfd, (long)&efd, 1, 0, 0) < 0)
            {
                errno = Libc.LastErrno;
                eventFd.Dispose();
                Libc.Close((int)fd);
                return null;
            }
            errno = 0;
            return new IoUring((int)fd, p, eventFd);
        }
        catch
        {
            eventFd?.Dispose();
            Libc.Close((int)fd);
            throw;
        }
    }

    /// <summary>Whether this kernel (and its sysctl / seccomp policy) lets this process set up a ring.</summary>
    public static bool IsAvailable(out int errno)
    {
        using var ring = TryCreate(2, out errno);
        return ring is not null;
    }

    /// <summary>Free SQ entries: the ring size less what is prepared and what the kernel has not consumed yet.</summary>
    public uint SqSpace => SqEntries - (_sqLocalTail - Volatile.Read(ref *_sqHead));

    private Sqe* Next()
    {
        if (SqSpace == 0) return null;
        var sqe = (Sqe*)_sqes + (_sqLocalTail & _sqMask);
        *sqe = default;
        _sqLocalTail++;
        return sqe;
    }

    /// <summary>Prepares a vectored read or write (opcode READV or WRITEV) of <paramref name="count"/> iovecs at <paramref name="iovecs"/>.</summary>
    public bool PrepareReadWrite(byte opcode, int fd, nint iovecs, int count, long offset, ulong userData, int rwFlags = 0)
    {
        var sqe = Next();
        if (sqe is null) return false;
        sqe->Opcode = opcode;
        sqe->Fd = fd;
        sqe->Addr = (ulong)iovecs;
        sqe->Len = (uint)count;
        sqe->Off = (ulong)offset;
        sqe->OpFlags = (uint)rwFlags;
        sqe->UserData = userData;
        return true;
    }

    /// <summary>Prepares an fsync (fdatasync with <paramref name="datasync"/>) of the whole file.</summary>
    public bool PrepareFsync(int fd, bool datasync, ulong userData, byte sqeFlags = 0)
    {
        var sqe = Next();
        if (sqe is null) return false;
        sqe->Opcode = OpFsync;
        sqe->Flags = sqeFlags;
        sqe->Fd = fd;
        sqe->OpFlags = datasync ? FsyncDatasync : 0;
        sqe->UserData = userData;
        return true;
    }

    /// <summary>Prepares a fallocate(fd, mode, offset, length): the kernel takes the length in addr and the mode in len.</summary>
    public bool PrepareFallocate(int fd, int mode, long offset, long length, ulong userData)
    {
        var sqe = Next();
        if (sqe is null) return false;
        sqe->Opcode = OpFallocate;
        sqe->Fd = fd;
        sqe->Off = (ulong)offset;
        sqe->Addr = (ulong)length;
        sqe->Len = (uint)mode;
        sqe->UserData = userData;
        return true;
    }

    /// <summary>Prepares an ASYNC_CANCEL of the request submitted with <paramref name="target"/> as its user data.</summary>
    public bool PrepareCancel(ulong target, ulong userData)
    {
        var sqe = Next();
        if (sqe is null) return false;
        sqe->Opcode = OpAsyncCancel;
        sqe->Fd = -1;
        sqe->Addr = target;
        sqe->UserData = userData;
        return true;
    }

    /// <summary>Publishes every prepared SQE and hands them to the kernel in one io_uring_enter. Returns -errno on failure.</summary>
    public int Submit()
    {
        uint count = _sqLocalTail - _sqSubmitted;
        if (count == 0) return 0;
        Volatile.Write(ref *_sqTail, _sqLocalTail); // release: the SQEs' contents before the tail
        _sqSubmitted = _sqLocalTail;
        while (true)
        {
            long n = Libc.Syscall(Libc.SYS_io_uring_enter, _fd, count, 0, 0, 0, 0);
            if (n >= 0)
            {
                if ((uint)n == count) return (int)n;
                count -= (uint)n; // EAGAIN-like partial submission: the rest stays in the ring; try again
                continue;
            }
            int errno = Libc.LastErrno;
            if (errno == Libc.EINTR) continue;
            if (errno == Libc.EAGAIN) { Thread.Yield(); continue; }
            return -errno;
        }
    }

    /// <summary>Waits in the kernel until at least one completion is posted (tests and blocking callers).</summary>
    public void WaitForCompletion()
    {
        while (Libc.Syscall(Libc.SYS_io_uring_enter, _fd, 0, 1, EnterGetEvents, 0, 0) < 0)
        {
            int errno = Libc.LastErrno;
            if (errno != Libc.EINTR) throw Libc.Error("io_uring_enter", errno);
        }
    }

    /// <summary>Takes the next completion, if one is posted.</summary>
    public bool TryReap(out ulong userData, out int result)
    {
        uint head = *_cqHead; // only we write the head
        if (head == Volatile.Read(ref *_cqTail)) { userData = 0; result = 0; return false; } // acquire: the CQE after the tail
        var cqe = _cqes + (head & _cqMask);
        userData = cqe->UserData;
        result = cqe->Res;
        Volatile.Write(ref *_cqHead, head + 1); // release: done reading the CQE before giving its slot back
        return true;
    }

    /// <summary>Whether a completion is posted and not yet reaped.</summary>
    public bool HasCompletions => *_cqHead != Volatile.Read(ref *_cqTail);

    /// <summary>Clears the eventfd's readiness; false if it was not readable.</summary>
    public bool ConsumeSignal() => _eventFd.TryConsume();

    /// <summary>Makes the eventfd readable (completions remain that the caller did not take).</summary>
    public void Signal() => _eventFd.Signal();

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd < 0) return;
        Libc.Munmap(_sqes, _sqesSize);
        if (_cqRing != _sqRing) Libc.Munmap(_cqRing, _cqRingSize);
        Libc.Munmap(_sqRing, _sqRingSize);
        Libc.Close(fd); // cancels and waits for whatever the kernel still has in flight
        _eventFd.Dispose();
    }
}
