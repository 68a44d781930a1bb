using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharpVhost.Memory;

/// <summary>
/// An immutable snapshot of guest memory: the regions, indexed by guest-physical and by frontend-virtual
/// address (binary search, O(log n)), and the dirty log if logging is on. A new snapshot is built for
/// every change and published by <see cref="GuestMemoryDomain"/>; code inside a read section may use
/// the snapshot it was given, and pointers into it, until the section ends.
/// </summary>
public sealed unsafe class GuestMemory
{
    /// <summary>vhost-user's CONFIGURE_MEM_SLOTS limit that QEMU asks for.</summary>
    public const int MaxRegions = 509;

    private readonly MemoryRegion[] _byGuest;     // sorted by guest-physical start
    private readonly MemoryRegion[] _byFrontend;  // sorted by frontend-virtual start

    public long Generation { get; }
    public IReadOnlyList<MemoryRegion> Regions => _byGuest;
    public DirtyLog? Log { get; }
    public bool Logging => Log is not null;

    public static GuestMemory Empty { get; } = new([], [], null, 0);

    private GuestMemory(MemoryRegion[] byGuest, MemoryRegion[] byFrontend, DirtyLog? log, long generation)
    {
        _byGuest = byGuest;
        _byFrontend = byFrontend;
        Log = log;
        Generation = generation;
    }

    /// <summary>Builds a snapshot, rejecting overlapping regions (in either address space) and too many regions.</summary>
    public static GuestMemory Create(IEnumerable<MemoryRegion> regions, DirtyLog? log, long generation)
    {
        var byGuest = regions.OrderBy(r => r.GuestPhysicalAddress).ToArray();
        if (byGuest.Length > MaxRegions) throw new GuestMemoryException($"{byGuest.Length} memory regions exceed the limit of {MaxRegions}");
        for (int i = 1; i < byGuest.Length; i++)
            if (byGuest[i].GuestPhysicalAddress < byGuest[i - 1].Description.GuestPhysicalEnd)
                throw new GuestMemoryException($"memory regions overlap in guest-physical space: {byGuest[i - 1]} and {byGuest[i]}");
        var byFrontend = byGuest.OrderBy(r => r.FrontendVirtualAddress).ToArray();
        for (int i = 1; i < byFrontend.Length; i++)
            if (byFrontend[i].FrontendVirtualAddress < byFrontend[i - 1].Description.FrontendVirtualEnd)
                throw new GuestMemoryException($"memory regions overlap in frontend-virtual space: {byFrontend[i - 1]} and {byFrontend[i]}");
        return new GuestMemory(byGuest, byFrontend, log, generation);
    }

    public GuestMemory WithGeneration(long generation) => new(_byGuest, _byFrontend, Log, generation);
    public GuestMemory WithLog(DirtyLog? log, long generation) => new(_byGuest, _byFrontend, log, generation);

    public MemoryRegion? FindByGuest(ulong gpa) => Find<GuestStart>(_byGuest, gpa);
    public MemoryRegion? FindByFrontend(ulong uva) => Find<FrontendStart>(_byFrontend, uva);

    // Which address space a search runs in; a struct type parameter so the JIT inlines the key.
    private interface IRegionStart { static abstract ulong Of(MemoryRegion region); }
    private struct GuestStart : IRegionStart { public static ulong Of(MemoryRegion r) => r.GuestPhysicalAddress; }
    private struct FrontendStart : IRegionStart { public static ulong Of(MemoryRegion r) => r.FrontendVirtualAddress; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static MemoryRegion? Find<TStart>(MemoryRegion[] sorted, ulong address) where TStart : struct, IRegionStart
    {
        static ulong start(MemoryRegion r) => TStart.Of(r);
        // Single region is by far the common case (QEMU with <= 3 GiB): skip the search.
        if (sorted.Length == 1)
        {
            var only = sorted[0];
            return address - start(only) < only.Size ? only : null;
        }
        int lo = 0, hi = sorted.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (start(sorted[mid]) <= address) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        if (found < 0) return null;
        var region = sorted[found];
        return address - start(region) < region.Size ? region : null;
    }

    /// <summary>
    /// Host address of [gpa, gpa+length), which must lie inside one region (and a writable one if
    /// <paramref name="write"/>). False for anything else, including overflow.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryTranslate(ulong gpa, ulong length, bool write, out nint host)
    {
        var region = FindByGuest(gpa);
        host = 0;
        if (region is null) return false;
        ulong offset = gpa - region.GuestPhysicalAddress;
        if (length > region.Size - offset) return false;
        if (write && !region.Writable) return false;
        host = region.HostAddress + (nint)offset;
        return true;
    }

    /// <summary>Like <see cref="TryTranslate"/> for a frontend-virtual address (vring addresses from SET_VRING_ADDR).</summary>
    public bool TryTranslateFrontend(ulong uva, ulong length, bool write, out nint host, out ulong gpa)
    {
        var region = FindByFrontend(uva);
        host = 0; gpa = 0;
        if (region is null) return false;
        ulong offset = uva - region.FrontendVirtualAddress;
        if (length > region.Size - offset) return false;
        if (write && !region.Writable) return false;
        host = region.HostAddress + (nint)offset;
        gpa = region.GuestPhysicalAddress + offset;
        return true;
    }

    /// <summary>A span over guest memory; throws <see cref="GuestMemoryException"/> if the range is not inside one region.</summary>
    public Span<byte> GetSpan(ulong gpa, int length, bool write)
    {
        if (length < 0 || !TryTranslate(gpa, (ulong)length, write, out nint host))
            throw new GuestMemoryException($"guest range [{gpa:x}, +{length:x}) is not {(write ? "writable " : "")}guest memory");
        return new Span<byte>((void*)host, length);
    }

    /// <summary>Reads a little-endian value with a bounds check (the copy_from_user analogue).</summary>
    public T Read<T>(ulong gpa) where T : unmanaged
    {
        if (!TryTranslate(gpa, (ulong)sizeof(T), false, out nint host))
            throw new GuestMemoryException($"guest address {gpa:x} (+{sizeof(T)}) is not guest memory");
        return Unsafe.ReadUnaligned<T>((void*)host);
    }

    /// <summary>Writes a value with a bounds and permission check, logging the page if logging is on.</summary>
    public void Write<T>(ulong gpa, T value) where T : unmanaged
    {
        if (!TryTranslate(gpa, (ulong)sizeof(T), true, out nint host))
            throw new GuestMemoryException($"guest address {gpa:x} (+{sizeof(T)}) is not writable guest memory");
        Unsafe.WriteUnaligned((void*)host, value);
        Log?.Mark(gpa, (ulong)sizeof(T));
    }

    /// <summary>Copies bytes out of guest memory, crossing region boundaries where guest memory is contiguous.</summary>
    public void CopyFrom(ulong gpa, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            var region = FindByGuest(gpa) ?? throw new GuestMemoryException($"guest address {gpa:x} is not guest memory");
            ulong offset = gpa - region.GuestPhysicalAddress;
            int n = (int)Math.Min((ulong)destination.Length, region.Size - offset);
            new ReadOnlySpan<byte>((void*)(region.HostAddress + (nint)offset), n).CopyTo(destination);
            destination = destination[n..];
            gpa += (ulong)n;
        }
    }

    /// <summary>Copies bytes into guest memory (writable regions only), logging the pages written.</summary>
    public void CopyTo(ulong gpa, ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            var region = FindByGuest(gpa) ?? throw new GuestMemoryException($"guest address {gpa:x} is not guest memory");
            if (!region.Writable) throw new GuestMemoryException($"guest address {gpa:x} is read-only");
            ulong offset = gpa - region.GuestPhysicalAddress;
            int n = (int)Math.Min((ulong)source.Length, region.Size - offset);
            source[..n].CopyTo(new Span<byte>((void*)(region.HostAddress + (nint)offset), n));
            Log?.Mark(gpa, (ulong)n);
            source = source[n..];
            gpa += (ulong)n;
        }
    }
}
