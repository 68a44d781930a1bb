using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace SharpVhost.Virtio;

/// <summary>
/// Records which split-ring requests are in flight in memory the frontend keeps for us
/// (vhost-user INFLIGHT_SHMFD), so that a backend restarted after a crash resubmits exactly the
/// requests the guest has not seen completed. Layout per queue, as vhost-user.rst describes it:
/// a 16-byte header <c>{u64 features; u16 version; u16 desc_num; u16 last_batch_head; u16 used_idx}</c>
/// then one 16-byte <c>{u8 inflight; u8 pad[5]; u16 next; u64 counter}</c> per descriptor.
/// The frontend only stores the region, but it is not trusted: recovery reads it once into private
/// memory and checks every field there; afterwards the tracker only writes it. Used only by the queue's worker.
/// </summary>
public sealed unsafe class SplitInflightTracker
{
    private const int HeaderSize = 16;
    private const int EntrySize = 16;
    private const ushort Version = 1;
    private readonly byte* _region;
    private readonly int _size;
    private readonly ushort[] _batch;
    private int _batchCount;
    private ulong _counter;
    private ushort _lastBatchHead; // as last written: the region is never read back

    /// <summary>Bytes one queue's region takes (64-byte aligned so queues do not share cache lines).</summary>
    public static ulong RegionSize(int queueSize) => ((ulong)(HeaderSize + EntrySize * queueSize) + 63) & ~63ul;

    /// <param name="region">Host address of this queue's region; the caller keeps it mapped while the queue runs.</param>
    public SplitInflightTracker(nint region, int queueSize)
    {
        _region = (byte*)region;
        _size = queueSize;
        _batch = new ushort[queueSize];
    }

    private ref ushort VersionField => ref Unsafe.AsRef<ushort>(_region + 8);
    private ref ushort DescNum => ref Unsafe.AsRef<ushort>(_region + 10);
    private ref ushort LastBatchHead => ref Unsafe.AsRef<ushort>(_region + 12);
    private ref ushort UsedIdx => ref Unsafe.AsRef<ushort>(_region + 14);
    private ref byte InflightFlag(int head) => ref _region[HeaderSize + head * EntrySize];
    private ref ushort Next(int head) => ref Unsafe.AsRef<ushort>(_region + HeaderSize + head * EntrySize + 6);
    private ref ulong Counter(int head) => ref Unsafe.AsRef<ulong>(_region + HeaderSize + head * EntrySize + 8);

    /// <summary>
    /// Brings the region in line with the ring after a (re)start. Returns the heads to resubmit, oldest
    /// first, and how many requests are in flight (the backend's next avail index is the used index plus
    /// that many). A region that was never initialized, or does not describe this queue, starts afresh.
    /// </summary>
    public ushort[] Recover(ushort ringUsedIdx, out int inFlight)
    {
        inFlight = 0;
        int bytes = (int)RegionSize(_size);
        byte[] copy = new ReadOnlySpan<byte>(_region, bytes).ToArray(); // the one read of the region
        if (BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(8)) != Version || BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(10)) != _size)
        {
            new Span<byte>(_region, bytes).Clear();
            VersionField = Version;
            DescNum = (ushort)_size;
            UsedIdx = ringUsedIdx;
            _lastBatchHead = 0;
            return [];
        }
        // The copy is ours: flags cleared below are cleared in it too, and only it is read.
        ref byte Flag(int head) => ref copy[HeaderSize + head * EntrySize];
        ushort NextOf(int head) => BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(HeaderSize + head * EntrySize + 6));
        _lastBatchHead = BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(12));
        ushort recordedUsed = BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(14));
        if (recordedUsed != ringUsedIdx)
        {
            // We crashed between publishing used.idx and clearing the batch's inflight flags: finish that now.
            int batch = (ushort)(ringUsedIdx - recordedUsed);
            int head = _lastBatchHead;
            for (int i = 0; i < batch && i < _size && head < _size; i++)
            {
                Flag(head) = 0;
                InflightFlag(head) = 0;
                head = NextOf(head);
            }
            UsedIdx = ringUsedIdx;
        }
        var pending = new List<(ulong Counter, ushort Head)>();
        for (int head = 0; head < _size; head++)
        {
            if (Flag(head) == 0) continue;
            if (Flag(head) != 1) { InflightFlag(head) = 0; continue; } // garbage: not ours
            ulong counter = BinaryPrimitives.ReadUInt64LittleEndian(copy.AsSpan(HeaderSize + head * EntrySize + 8));
            pending.Add((counter, (ushort)head));
            _counter = Math.Max(_counter, counter);
        }
        pending.Sort();
        inFlight = pending.Count;
        return pending.Select(p => p.Head).ToArray();
    }

    /// <summary>A head was taken from the avail ring.</summary>
    public void OnPopped(ushort head)
    {
        Counter(head) = ++_counter;
        Volatile.Write(ref InflightFlag(head), 1);
    }

    /// <summary>A popped head was given back unused (<see cref="SplitQueue.UndoPop"/>): no longer in flight.</summary>
    public void OnUnpopped(ushort head)
    {
        if (head < _size) Volatile.Write(ref InflightFlag(head), 0);
    }

    /// <summary>A used element for <paramref name="head"/> was written (not yet published).</summary>
    public void OnUsed(ushort head)
    {
        if (head >= _size || _batchCount == _batch.Length) return;
        Next(head) = _lastBatchHead;
        LastBatchHead = _lastBatchHead = head;
        _batch[_batchCount++] = head;
    }

    /// <summary>used.idx was published: the batch is no longer in flight.</summary>
    public void OnPublished(ushort usedIdx)
    {
        for (int i = 0; i < _batchCount; i++) InflightFlag(_batch[i]) = 0;
        _batchCount = 0;
        Volatile.Write(ref UsedIdx, usedIdx);
    }
}
