using SharpVhost.Interop;

namespace SharpVhost.Memory;

/// <summary>
/// The live-migration dirty log: one bit per 4 KiB guest page in memory shared with the frontend
/// (the userspace form of <c>set_page_dirty</c>). Bits are set with atomic OR because the frontend
/// clears them concurrently while it copies pages. Owns its mapping; like a region, it is retired
/// through the invalidation domain so no worker sets a bit in an unmapped log.
/// </summary>
public sealed unsafe class DirtyLog : IDisposable
{
    public const int PageShift = 12;
    private readonly MemoryMapping _mapping;
    private readonly byte* _bits;
    private readonly ulong _bytes;

    public ulong SizeInBytes => _bytes;

    public DirtyLog(MemoryMapping mapping, ulong offset, ulong size)
    {
        if (offset > mapping.Length || size > mapping.Length - offset) throw new GuestMemoryException("dirty log lies outside its mapping");
        _mapping = mapping;
        _bits = (byte*)mapping.Address + offset;
        _bytes = size;
    }

    /// <summary>Marks every page that [gpa, gpa+length) touches. Pages beyond the log are ignored:
    /// the frontend sized the log for the memory it migrates.</summary>
    public void Mark(ulong gpa, ulong length)
    {
        if (length == 0) return;
        // The caller's writes to those pages must be visible before we look at the bits: SetBit skips
        // bits it reads as set, and a store still in the store buffer behind that load could land after
        // the frontend cleared the bit and copied the page (a lost dirty page).
        Interlocked.MemoryBarrier();
        ulong first = gpa >> PageShift;
        ulong last = (gpa + length - 1) >> PageShift;
        if (last < first) last = ulong.MaxValue >> PageShift; // wrapped: mark to the end
        for (ulong page = first; page <= last; page++)
        {
            ulong index = page >> 3;
            if (index >= _bytes) return;
            SetBit(index, (byte)(1 << (int)(page & 7)));
        }
    }

    public bool IsMarked(ulong gpa)
    {
        ulong page = gpa >> PageShift;
        ulong index = page >> 3;
        return index < _bytes && (Volatile.Read(ref _bits[index]) & (1 << (int)(page & 7))) != 0;
    }

    private void SetBit(ulong index, byte bit)
    {
        ref byte cell = ref _bits[index];
        byte old = Volatile.Read(ref cell);
        while ((old & bit) == 0)
        {
            byte seen = Interlocked.CompareExchange(ref cell, (byte)(old | bit), old);
            if (seen == old) return;
            old = seen;
        }
    }

    public void Dispose() => _mapping.Dispose();
}
