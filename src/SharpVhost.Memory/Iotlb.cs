namespace SharpVhost.Memory;

/// <summary>What a device may do through an IOTLB entry (the values of vhost's VHOST_ACCESS_*).</summary>
[Flags]
public enum IotlbAccess : byte
{
    None = 0,
    Read = 1,
    Write = 2,
    ReadWrite = Read | Write,
}

/// <summary>One translation: [Iova, Iova+Size) is the frontend's virtual [UserAddress, UserAddress+Size).</summary>
public readonly record struct IotlbEntry(ulong Iova, ulong Size, ulong UserAddress, IotlbAccess Access)
{
    public ulong IovaEnd => Iova + Size;

    public override string ToString() => $"iova [{Iova:x}, +{Size:x}) -> uva {UserAddress:x} {Access}";
}

/// <summary>
/// An immutable device IOTLB: the I/O virtual address translations a frontend with a virtual IOMMU
/// sent (IOTLB_MSG updates), sorted and without overlaps (a newer entry replaces what it covers).
/// Part of the <see cref="GuestMemory"/> snapshot, so a change is published, and an invalidation
/// retired, exactly like a memory-table change. Bounded: beyond <see cref="MaxEntries"/> the oldest
/// entries are dropped (they come back through a miss), so a frontend cannot make it grow without limit.
/// </summary>
public sealed class Iotlb
{
    /// <summary>A cache, not a page table: DPDK keeps 2,048 entries; we allow more before evicting.</summary>
    public const int MaxEntries = 8192;

    private readonly IotlbEntry[] _entries;  // sorted by Iova, non-overlapping
    private readonly long[] _ages;           // insertion order of each entry (for eviction)
    private readonly long _nextAge;

    public static Iotlb Empty { get; } = new([], [], 0);

    private Iotlb(IotlbEntry[] entries, long[] ages, long nextAge)
    {
        _entries = entries;
        _ages = ages;
        _nextAge = nextAge;
    }

    public int Count => _entries.Length;
    public IReadOnlyList<IotlbEntry> Entries => _entries;

    /// <summary>The entry containing <paramref name="iova"/>, if any (binary search).</summary>
    public bool TryFind(ulong iova, out IotlbEntry entry)
    {
        var entries = _entries;
        int lo = 0, hi = entries.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            ref readonly var e = ref entries[mid];
            if (iova < e.Iova) hi = mid - 1;
            else if (iova - e.Iova >= e.Size) lo = mid + 1;
            else { entry = e; return true; }
        }
        entry = default;
        return false;
    }

    /// <summary>Adds a translation; whatever it overlaps is replaced. Validates what the frontend sent.</summary>
    public Iotlb Add(IotlbEntry entry)
    {
        if (entry.Size == 0) throw new GuestMemoryException("IOTLB update with size 0");
        if (entry.Iova + entry.Size < entry.Iova) throw new GuestMemoryException($"IOTLB update at iova {entry.Iova:x} wraps around");
        if (entry.UserAddress + entry.Size < entry.UserAddress) throw new GuestMemoryException($"IOTLB update to uva {entry.UserAddress:x} wraps around");
        if (entry.Access == IotlbAccess.None || (entry.Access & ~IotlbAccess.ReadWrite) != 0)
            throw new GuestMemoryException($"IOTLB update with access {(byte)entry.Access} grants nothing");
        var (entries, ages) = Remove(entry.Iova, entry.IovaEnd);
        int at = LowerBound(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(entries), entry.Iova);
        entries.Insert(at, entry);
        ages.Insert(at, _nextAge);
        while (entries.Count > MaxEntries)
        {
            int oldest = ages.IndexOf(ages.Min());
            entries.RemoveAt(oldest);
            ages.RemoveAt(oldest);
        }
        return new Iotlb([.. entries], [.. ages], _nextAge + 1);
    }

    /// <summary>Drops every translation of [iova, iova+size) (an end past 2^64 means "to the top"). Same instance if nothing was covered.</summary>
    public Iotlb Invalidate(ulong iova, ulong size)
    {
        if (!Overlaps(iova, size)) return this;
        var (entries, ages) = Remove(iova, End(iova, size));
        return new Iotlb([.. entries], [.. ages], _nextAge);
    }

    /// <summary>Whether any translation covers part of [iova, iova+size) (an end past 2^64 means "to the top").</summary>
    public bool Overlaps(ulong iova, ulong size)
    {
        ulong end = End(iova, size);
        // The first entry ending after iova is the only candidate: entries are sorted and disjoint.
        int at = LowerBound(_entries, iova);
        if (at > 0 && _entries[at - 1].IovaEnd > iova) return true;
        return at < _entries.Length && _entries[at].Iova < end;
    }

    private static ulong End(ulong iova, ulong size) => iova + size < iova ? ulong.MaxValue : iova + size;

    /// <summary>The entries with [start, end) cut out: entries partly inside keep their outside pieces.</summary>
    private (List<IotlbEntry>, List<long>) Remove(ulong start, ulong end)
    {
        var entries = new List<IotlbEntry>(_entries.Length + 2);
        var ages = new List<long>(_entries.Length + 2);
        for (int i = 0; i < _entries.Length; i++)
        {
            var e = _entries[i];
            if (e.IovaEnd <= start || e.Iova >= end)
            {
                entries.Add(e);
                ages.Add(_ages[i]);
                continue;
            }
            if (e.Iova < start)
            {
                entries.Add(e with { Size = start - e.Iova });
                ages.Add(_ages[i]);
            }
            if (e.IovaEnd > end && end != ulong.MaxValue)
            {
                ulong cut = end - e.Iova;
                entries.Add(new IotlbEntry(end, e.Size - cut, e.UserAddress + cut, e.Access));
                ages.Add(_ages[i]);
            }
        }
        return (entries, ages);
    }

    private static int LowerBound(ReadOnlySpan<IotlbEntry> entries, ulong iova)
    {
        int lo = 0, hi = entries.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (entries[mid].Iova < iova) lo = mid + 1; else hi = mid;
        }
        return lo;
    }
}
