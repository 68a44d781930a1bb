using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharpVhost.Virtio;

/// <summary>
/// Records which packed-ring buffers are in flight in memory the frontend keeps for us (vhost-user
/// INFLIGHT_SHMFD), so that a backend restarted after a crash resubmits exactly the buffers the
/// driver has not seen completed. A packed ring cannot be re-read for them: used descriptors
/// overwrite ring slots of buffers still in flight, and the driver reuses slots as soon as it counts
/// them free. So the region keeps a copy of every in-flight descriptor, as DPDK's packed inflight
/// format does (the layout here is our own; QEMU only stores the region).
///
/// Layout per queue: a 16-byte header <c>{u64 features; u16 version; u16 desc_num; u16 used; u16 pad}</c>
/// (used = next used position, wrap counter in bit 15, as published last); one 16-byte entry per buffer
/// id <c>{u8 inflight; u8 pad; u16 count; u16 first; u16 pad; u64 counter}</c>; then a pool of 24-byte
/// descriptor copies <c>{pvirtq_desc; u16 next; u8 pad[6]}</c>, at most desc_num in use (no more
/// descriptors than the ring holds are ever in flight). The frontend is not trusted: recovery checks
/// every field, and the region is read once, at <see cref="Load"/>, into private memory: from then on
/// the tracker only writes it and answers from its own copy (a frontend flipping a count between the
/// check and a later read once moved the used position past the ring). Used only by the queue's worker.
/// </summary>
public sealed unsafe class PackedInflightTracker
{
    private const int HeaderSize = 16;
    private const int IdEntrySize = 16;
    private const int CopySize = 24;
    /// <summary>Distinct from the split tracker's version, so a region written for the other layout starts afresh.</summary>
    private const ushort Version = 0x5002;
    private const ushort NoEntry = 0xffff;
    private readonly byte* _region;
    private readonly int _size;
    // What the region says, as we wrote it or as Load validated it: never read back from the region.
    private readonly bool[] _inflight;
    private readonly ushort[] _count, _first, _next;
    private readonly ulong[] _counterOf;
    private readonly PackedDescriptor[] _saved;   // descriptor copies of buffers found in flight at Load
    private readonly ushort[] _freeCopies;
    private int _freeCount;
    private readonly ushort[] _batch;
    private int _batchCount;
    private ulong _counter;

    /// <summary>Bytes one queue's region takes (64-byte aligned so queues do not share cache lines).</summary>
    public static ulong RegionSize(int queueSize) => ((ulong)(HeaderSize + (IdEntrySize + CopySize) * queueSize) + 63) & ~63ul;

    /// <param name="region">Host address of this queue's region; the caller keeps it mapped while the queue runs.</param>
    public PackedInflightTracker(nint region, int queueSize)
    {
        if (!PackedRingLayout.IsValidQueueSize(queueSize)) throw new ArgumentOutOfRangeException(nameof(queueSize));
        _region = (byte*)region;
        _size = queueSize;
        _inflight = new bool[queueSize];
        _count = new ushort[queueSize];
        _first = new ushort[queueSize];
        _next = new ushort[queueSize];
        _counterOf = new ulong[queueSize];
        _saved = new PackedDescriptor[queueSize];
        _freeCopies = new ushort[queueSize];
        _batch = new ushort[queueSize];
        RebuildFreeList();
    }

    public int Size => _size;

    private int RegionBytes => (int)RegionSize(_size);
    private ref ushort VersionField => ref Unsafe.AsRef<ushort>(_region + 8);
    private ref ushort DescNum => ref Unsafe.AsRef<ushort>(_region + 10);
    private ref ushort UsedField => ref Unsafe.AsRef<ushort>(_region + 12);
    private byte* IdEntry(int id) => _region + HeaderSize + id * IdEntrySize;
    private ref byte InflightFlag(int id) => ref *IdEntry(id);
    private ref ushort Count(int id) => ref Unsafe.AsRef<ushort>(IdEntry(id) + 2);
    private ref ushort First(int id) => ref Unsafe.AsRef<ushort>(IdEntry(id) + 4);
    private ref ulong Counter(int id) => ref Unsafe.AsRef<ulong>(IdEntry(id) + 8);
    private byte* Copy(int entry) => _region + HeaderSize + _size * IdEntrySize + entry * CopySize;
    private ref ushort CopyNext(int entry) => ref Unsafe.AsRef<ushort>(Copy(entry) + 16);

    /// <summary>
    /// Reads the region after a (re)start: one copy into private memory, validated there. False when it
    /// was never initialized or describes another queue: it is then reset to "nothing in flight, used
    /// position as given". True: the recorded used position is returned, and the in-flight entries are
    /// checked (a bad one is dropped).
    /// </summary>
    public bool Load(int usedIndex, bool usedWrap, out int recordedUsed, out bool recordedWrap)
    {
        recordedUsed = usedIndex;
        recordedWrap = usedWrap;
        Array.Clear(_inflight);
        byte[] copy = new ReadOnlySpan<byte>(_region, RegionBytes).ToArray(); // the one read of the region
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(8));
        ushort descNum = BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(10));
        ushort used = BinaryPrimitives.ReadUInt16LittleEndian(copy.AsSpan(12));
        if (version != Version || descNum != _size || (used & 0x7fff) >= _size)
        {
            new Span<byte>(_region, RegionBytes).Clear();
            VersionField = Version;
            DescNum = (ushort)_size;
            UsedField = Encode(usedIndex, usedWrap);
            RebuildFreeList();
            return false;
        }
        recordedUsed = used & 0x7fff;
        recordedWrap = (used & PackedRingLayout.WrapBit) != 0;
        int copies = HeaderSize + _size * IdEntrySize;
        for (int e = 0; e < _size; e++)
        {
            var c = copy.AsSpan(copies + e * CopySize, CopySize);
            _saved[e] = MemoryMarshal.Read<PackedDescriptor>(c);
            _next[e] = BinaryPrimitives.ReadUInt16LittleEndian(c[16..]);
        }
        // Keep only entries whose copies form a proper chain; no copy may belong to two buffers.
        var owned = new bool[_size];
        int total = 0;
        for (int id = 0; id < _size; id++)
        {
            var entry = copy.AsSpan(HeaderSize + id * IdEntrySize, IdEntrySize);
            byte flag = entry[0];
            if (flag == 0) continue;
            ushort count = BinaryPrimitives.ReadUInt16LittleEndian(entry[2..]);
            ushort first = BinaryPrimitives.ReadUInt16LittleEndian(entry[4..]);
            bool valid = flag == 1 && count >= 1 && count <= _size - total;
            int e = first;
            for (int i = 0; valid && i < count; i++)
            {
                if (e >= _size || owned[e]) { valid = false; break; }
                owned[e] = true;
                e = _next[e];
            }
            if (!valid)
            {
                InflightFlag(id) = 0;
                continue;
            }
            _inflight[id] = true;
            _count[id] = count;
            _first[id] = first;
            _counterOf[id] = BinaryPrimitives.ReadUInt64LittleEndian(entry[8..]);
            total += count;
            _counter = Math.Max(_counter, _counterOf[id]);
        }
        RebuildFreeList();
        return true;
    }

    private void RebuildFreeList()
    {
        var used = new bool[_size];
        for (int id = 0; id < _size; id++)
        {
            if (!_inflight[id]) continue;
            int entry = _first[id];
            for (int i = 0; i < _count[id]; i++) { used[entry] = true; entry = _next[entry]; }
        }
        _freeCount = 0;
        for (int e = _size - 1; e >= 0; e--) if (!used[e]) _freeCopies[_freeCount++] = (ushort)e;
    }

    /// <summary>Buffers in flight, oldest first, and the ring descriptors they took in all.</summary>
    public ushort[] Pending(out int descriptors)
    {
        var pending = new List<(ulong Counter, ushort Id)>();
        descriptors = 0;
        for (int id = 0; id < _size; id++)
        {
            if (!_inflight[id]) continue;
            pending.Add((_counterOf[id], (ushort)id));
            descriptors += _count[id];
        }
        pending.Sort();
        return pending.Select(p => p.Id).ToArray();
    }

    /// <summary>How many ring descriptors buffer <paramref name="id"/> took, or 0 if it is not in flight.</summary>
    public int DescriptorCount(ushort id) => id < _size && _inflight[id] ? _count[id] : 0;

    /// <summary>Copies buffer <paramref name="id"/>'s saved descriptors (as <see cref="Load"/> read them) into <paramref name="into"/>; returns how many.</summary>
    public int ReadSaved(ushort id, Span<PackedDescriptor> into)
    {
        int count = DescriptorCount(id);
        int entry = _first[id];
        for (int i = 0; i < count; i++)
        {
            into[i] = _saved[entry];
            entry = _next[entry];
        }
        return count;
    }

    /// <summary>A buffer was popped from the ring: save its descriptors, then mark it in flight.</summary>
    public void OnPopped(ushort id, ReadOnlySpan<PackedDescriptor> descriptors)
    {
        if (id >= _size || _inflight[id] || descriptors.Length > _freeCount) return; // cannot happen with a checked ring; recovery then misses it
        ushort first = NoEntry, previous = NoEntry;
        foreach (var d in descriptors)
        {
            ushort entry = _freeCopies[--_freeCount];
            Unsafe.WriteUnaligned(Copy(entry), d);
            _saved[entry] = d;
            if (previous == NoEntry) first = entry;
            else
            {
                CopyNext(previous) = entry;
                _next[previous] = entry;
            }
            previous = entry;
        }
        Count(id) = _count[id] = (ushort)descriptors.Length;
        First(id) = _first[id] = first;
        Counter(id) = _counterOf[id] = ++_counter;
        _inflight[id] = true;
        Volatile.Write(ref InflightFlag(id), 1);
    }

    /// <summary>A used descriptor for <paramref name="id"/> was written (not yet exposed).</summary>
    public void OnUsed(ushort id)
    {
        if (id < _size && _batchCount < _batch.Length) _batch[_batchCount++] = id;
    }

    /// <summary>The batch was exposed: its buffers are no longer in flight; the next used position is recorded.</summary>
    public void OnPublished(int usedIndex, bool usedWrap)
    {
        for (int i = 0; i < _batchCount; i++) Complete(_batch[i]);
        _batchCount = 0;
        Volatile.Write(ref UsedField, Encode(usedIndex, usedWrap));
    }

    /// <summary>Marks <paramref name="id"/> completed and frees its copies; returns its descriptor count (0 if it was not in flight).</summary>
    public int Complete(ushort id)
    {
        int count = DescriptorCount(id);
        if (count == 0) return 0;
        _inflight[id] = false;
        InflightFlag(id) = 0;
        int entry = _first[id];
        for (int i = 0; i < count; i++)
        {
            _freeCopies[_freeCount++] = (ushort)entry; // the copies of in-flight buffers are never more than the pool
            entry = _next[entry];
        }
        return count;
    }

    /// <summary>Records the used position without a batch (after recovery walked the ring forward).</summary>
    public void SetUsed(int usedIndex, bool usedWrap) => Volatile.Write(ref UsedField, Encode(usedIndex, usedWrap));

    private static ushort Encode(int index, bool wrap) => (ushort)(index | (wrap ? PackedRingLayout.WrapBit : 0));
}
