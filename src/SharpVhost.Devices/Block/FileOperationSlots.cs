using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>
/// The per-queue bookkeeping the file engines share: one slot per operation in flight, each with its own
/// run of native iovecs (allocated once, so an operation costs no allocation), a free list, and the
/// completions that are ready before any system call (a refused operation).
/// Used by the queue's thread only, except where an engine hands a slot to a worker under its own lock.
/// </summary>
internal sealed class FileOperationSlots : IDisposable
{
    /// <summary>Linux's IOV_MAX: the most iovecs preadv / READV take at once.</summary>
    public const int IovMax = 1024;
    /// <summary>The alignment O_DIRECT needs of offsets, lengths and buffers (the logical block size of nearly every device).</summary>
    public const int DirectAlignment = 512;

    public struct Slot
    {
        public ulong Token;
        public BlockOperationKind Kind;
        public bool Busy, Direct, Fua, Cancelled;
        public uint Generation;
        public long Offset;      // where the next (re)submission starts
        public long Length;      // bytes of the whole operation (its result on success)
        public long Done;        // bytes moved so far (short reads and writes)
        public int First, Count; // the iovecs still to move, indices into Vectors
        public int Stage;        // WRITE_ZEROES fallbacks
        public int Result;       // thread-pool engine: the worker's result
    }

    private readonly int[] _free;
    private int _freeCount;
    private readonly BlockCompletion[] _ready;
    private int _readyHead, _readyCount;

    public Slot[] Slots { get; }
    public IoVectors Vectors { get; }
    public int Depth { get; }
    public int MaxSegments { get; }
    public int InFlight => Depth - _freeCount;
    public bool HasReady => _readyCount > 0;

    public FileOperationSlots(int depth, int maxSegments = IovMax)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(depth);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxSegments, IovMax);
        Depth = depth;
        MaxSegments = maxSegments;
        Slots = new Slot[depth];
        Vectors = new IoVectors(depth * maxSegments);
        _ready = new BlockCompletion[depth];
        _free = new int[depth];
        for (int i = 0; i < depth; i++) _free[i] = depth - 1 - i;
        _freeCount = depth;
    }

    /// <summary>
    /// Takes a slot for <paramref name="op"/> and fills its iovecs; -1 when all are in flight. A malformed
    /// operation (too many segments, lengths that disagree) still takes a slot and is completed at once
    /// with -EINVAL: <paramref name="refused"/> is set and nothing must be submitted for it.
    /// </summary>
    public int Take(in BlockOperation op, bool directAvailable, out bool refused)
    {
        refused = false;
        if (_freeCount == 0) return -1;
        int index = _free[--_freeCount];
        ref var s = ref Slots[index];
        uint generation = s.Generation + 1;
        s = new Slot
        {
            Token = op.Token, Kind = op.Kind, Busy = true, Fua = op.Fua, Generation = generation,
            Offset = op.Offset, Length = op.Length, First = index * MaxSegments,
        };
        if (op.Kind is BlockOperationKind.Read or BlockOperationKind.Write)
        {
            var segments = op.Segments;
            if (segments.Length > MaxSegments || op.Offset < 0) { refused = true; Complete(index, -FileIo.EINVAL); return index; }
            bool aligned = directAvailable && op.Offset % DirectAlignment == 0;
            long total = 0;
            for (int i = 0; i < segments.Length; i++)
            {
                var seg = segments[i];
                if (seg.Length < 0) { refused = true; Complete(index, -FileIo.EINVAL); return index; }
                Vectors.Set(s.First + i, seg.Address, seg.Length);
                total += seg.Length;
                aligned &= seg.Address % DirectAlignment == 0 && seg.Length % DirectAlignment == 0;
            }
            if (total != op.Length || total > int.MaxValue) { refused = true; Complete(index, -FileIo.EINVAL); return index; }
            s.Count = segments.Length;
            s.Direct = aligned;
            if (total == 0) { refused = true; Complete(index, 0); }
        }
        else if (op.Kind != BlockOperationKind.Flush && (op.Length <= 0 || op.Offset < 0))
        {
            refused = true;
            Complete(index, op.Length == 0 && op.Offset >= 0 ? 0 : -FileIo.EINVAL);
        }
        return index;
    }

    /// <summary>Finishes slot <paramref name="index"/> with <paramref name="result"/>: frees it and queues its completion.</summary>
    public void Complete(int index, int result)
    {
        ref var s = ref Slots[index];
        _ready[(_readyHead + _readyCount++) % _ready.Length] = new BlockCompletion(s.Token, result);
        s.Busy = false;
        _free[_freeCount++] = index;
    }

    /// <summary>Moves ready completions into <paramref name="into"/>.</summary>
    public int TakeReady(Span<BlockCompletion> into)
    {
        int n = 0;
        while (n < into.Length && _readyCount > 0)
        {
            into[n++] = _ready[_readyHead];
            _readyHead = (_readyHead + 1) % _ready.Length;
            _readyCount--;
        }
        return n;
    }

    /// <summary>The busy slot carrying <paramref name="token"/>, or -1.</summary>
    public int Find(ulong token)
    {
        for (int i = 0; i < Slots.Length; i++) if (Slots[i].Busy && Slots[i].Token == token) return i;
        return -1;
    }

    /// <summary>
    /// Accounts for <paramref name="moved"/> bytes of a read or write; true when the operation is whole,
    /// false when the rest must be submitted again (the iovecs and offset now describe that rest).
    /// </summary>
    public bool Advance(int index, long moved)
    {
        ref var s = ref Slots[index];
        s.Done += moved;
        if (s.Done >= s.Length) return true;
        int end = s.First + s.Count;
        s.First = Vectors.Advance(s.First, s.Count, moved);
        s.Count = end - s.First;
        s.Offset += moved;
        return false;
    }

    public void Dispose() => Vectors.Dispose();
}
