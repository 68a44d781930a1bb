using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>
/// A queue's io_uring on an image file: READV/WRITEV straight over the guest's segments (O_DIRECT when the
/// request is aligned and the storage has a direct fd), FSYNC with DATASYNC for FLUSH, FALLOCATE for
/// DISCARD and WRITE_ZEROES, ASYNC_CANCEL for <see cref="Cancel"/>. One io_uring_enter per <see cref="Submit"/>;
/// completions wake <see cref="CompletionFd"/>, the eventfd registered with the ring.
/// </summary>
/// <remarks>
/// FLUSH is not drained behind writes in flight: virtio-blk promises durability only for writes that
/// completed before the flush, and those completed in the kernel before we saw their completion, so an
/// fsync submitted after them covers them. Writes still in flight may or may not be covered.
/// </remarks>
public sealed class IoUringEngine : IBlockQueueEngine
{
    private const ulong CancelMark = 1ul << 63;
    private readonly IoUring _ring;
    private readonly FileOperationSlots _slots;
    private readonly int _bufferedFd, _directFd;

    public int CompletionFd => _ring.CompletionFd;
    public int Depth => _slots.Depth;
    public int MaxSegments => _slots.MaxSegments;
    public int InFlight => _slots.InFlight;

    private IoUringEngine(IoUring ring, int depth, int bufferedFd, int directFd)
    {
        _ring = ring;
        _slots = new FileOperationSlots(depth);
        _bufferedFd = bufferedFd;
        _directFd = directFd;
    }

    /// <summary>
    /// An engine over the raw descriptors <paramref name="bufferedFd"/> and (if not -1) <paramref name="directFd"/>,
    /// which the caller keeps open for the engine's lifetime; null with the errno if io_uring cannot be set up.
    /// </summary>
    public static IoUringEngine? TryCreate(int depth, int bufferedFd, int directFd, out int errno)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(depth);
        // Room for every operation, its resubmission and a cancel each: the SQ never refuses an Enqueue.
        var ring = IoUring.TryCreate((uint)Math.Max(8, depth * 2), out errno);
        return ring is null ? null : new IoUringEngine(ring, depth, bufferedFd, directFd);
    }

    private static ulong UserData(int index, uint generation) => (ulong)generation << 32 | (uint)index;

    public bool Enqueue(in BlockOperation operation)
    {
        int index = _slots.Take(operation, _directFd >= 0, out bool refused);
        if (index < 0) return false;
        if (refused) { _ring.Signal(); return true; }
        Prepare(index);
        return true;
    }

    /// <summary>Puts slot <paramref name="index"/>'s (remaining) work in the SQ.</summary>
    private void Prepare(int index)
    {
        ref var s = ref _slots.Slots[index];
        ulong userData = UserData(index, s.Generation);
        bool ok = s.Kind switch
        {
            BlockOperationKind.Read => _ring.PrepareReadWrite(IoUring.OpReadv, s.Direct ? _directFd : _bufferedFd, _slots.Vectors.AddressOf(s.First), s.Count, s.Offset, userData),
            BlockOperationKind.Write => _ring.PrepareReadWrite(IoUring.OpWritev, s.Direct ? _directFd : _bufferedFd, _slots.Vectors.AddressOf(s.First), s.Count, s.Offset, userData, s.Fua ? IoUring.RwfDsync : 0),
            BlockOperationKind.Flush => _ring.PrepareFsync(_bufferedFd, datasync: true, userData),
            BlockOperationKind.Discard or BlockOperationKind.WriteZeroesUnmap => _ring.PrepareFallocate(_bufferedFd, IoUring.FallocPunchHole, s.Offset, s.Length, userData),
            BlockOperationKind.WriteZeroes => _ring.PrepareFallocate(_bufferedFd, ZeroesMode(s.Stage), s.Offset, s.Length, userData),
            _ => false,
        };
        if (!ok) _slots.Complete(index, s.Kind > BlockOperationKind.WriteZeroesUnmap ? -FileIo.EINVAL : -FileIo.EIO);
    }

    /// <summary>
    /// WRITE_ZEROES without unmap: ZERO_RANGE; where the filesystem lacks it, as QEMU's file driver does,
    /// punch a hole (reads as zeroes) and allocate the range again.
    /// </summary>
    private static int ZeroesMode(int stage) => stage switch
    {
        0 => IoUring.FallocZeroRange,
        1 => IoUring.FallocPunchHole,
        _ => 1, // FALLOC_FL_KEEP_SIZE alone: allocate
    };

    public void Submit()
    {
        int n = _ring.Submit();
        if (n < 0) throw new IOException($"io_uring_enter failed: errno {-n}", -n);
    }

    public int Reap(Span<BlockCompletion> into)
    {
        _ring.ConsumeSignal();
        int n = _slots.TakeReady(into);
        while (n < into.Length && _ring.TryReap(out ulong userData, out int result))
        {
            if ((userData & CancelMark) != 0) continue; // the cancel's own completion: the target completes on its own
            int index = (int)(uint)userData;
            if ((uint)index >= (uint)_slots.Depth) continue;
            ref var s = ref _slots.Slots[index];
            if (!s.Busy || s.Generation != (uint)(userData >> 32)) continue;
            Completed(index, result);
            n += _slots.TakeReady(into[n..]);
        }
        if (_ring.Pending > 0) Submit(); // short transfers and fallbacks resubmitted above
        if (_slots.HasReady || _ring.HasCompletions) _ring.Signal(); // more than fitted: stay readable
        return n;
    }

    private void Completed(int index, int result)
    {
        ref var s = ref _slots.Slots[index];
        switch (s.Kind)
        {
            case BlockOperationKind.Read or BlockOperationKind.Write:
                if (result == -FileIo.EINVAL && s.Direct && s.Done == 0)
                {
                    // The device's logical block is larger than our alignment check assumed: the buffered fd takes it.
                    s.Direct = false;
                    Prepare(index);
                    return;
                }
                if (result < 0) { _slots.Complete(index, result); return; }
                if (result == 0) { _slots.Complete(index, -FileIo.EIO); return; } // end of file inside the request
                if (_slots.Advance(index, result)) _slots.Complete(index, (int)s.Length);
                else if (s.Cancelled) _slots.Complete(index, -FileIo.ECANCELED);
                else Prepare(index);
                return;
            case BlockOperationKind.WriteZeroes when result == -FileIo.EOPNOTSUPP && s.Stage == 0:
            case BlockOperationKind.WriteZeroes when result >= 0 && s.Stage == 1:
                s.Stage++;
                Prepare(index);
                return;
            default:
                _slots.Complete(index, result < 0 ? result : 0);
                return;
        }
    }

    public void Cancel(ulong token)
    {
        int index = _slots.Find(token);
        if (index < 0) return;
        ref var s = ref _slots.Slots[index];
        s.Cancelled = true;
        if (_ring.PrepareCancel(UserData(index, s.Generation), CancelMark | (uint)index)) Submit();
    }

    /// <summary>Cancels what is still in flight and waits (bounded) for it, so no I/O outlives the iovecs and the caller's buffers.</summary>
    public void Dispose()
    {
        var deadline = Environment.TickCount64 + 5000;
        if (InFlight > 0)
        {
            for (int i = 0; i < _slots.Depth; i++)
                if (_slots.Slots[i].Busy) _ring.PrepareCancel(UserData(i, _slots.Slots[i].Generation), CancelMark | (uint)i);
            _ring.Submit();
            Span<BlockCompletion> sink = stackalloc BlockCompletion[16];
            while (InFlight > 0 && Environment.TickCount64 < deadline)
            {
                if (Reap(sink) == 0 && InFlight > 0) EventFd.WaitAny([CompletionFd], 50);
            }
        }
        _ring.Dispose();
        _slots.Dispose();
    }
}
