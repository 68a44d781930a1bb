using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharpVhost.Memory;

/// <summary>Which kind of address a device is handed: buffer addresses are guest-physical, ring addresses (SET_VRING_ADDR) frontend-virtual.</summary>
public enum DeviceAddressKind { Buffer, Ring }

/// <summary>Why a translation stopped.</summary>
public enum TranslationStatus
{
    Mapped,
    /// <summary>Not guest memory (or outside what the IOTLB entry's user address maps).</summary>
    NotMemory,
    /// <summary>A write to read-only memory, or an access the IOTLB entry does not grant.</summary>
    Denied,
    /// <summary>No IOTLB entry covers the address: ask the frontend (IOTLB miss) and retry.</summary>
    IotlbMiss,
}

/// <summary>
/// An immutable snapshot of guest memory: the regions, indexed by guest-physical and by frontend-virtual
/// address (binary search, O(log n)), the dirty log if logging is on, and the device IOTLB if the
/// device sits behind a virtual IOMMU (ACCESS_PLATFORM). A new snapshot is built for every change
/// and published by <see cref="GuestMemoryDomain"/>; code inside a read section may use the snapshot
/// it was given, and pointers into it, until the section ends.
///
/// With an IOTLB every address a device is handed, buffer or ring, is an I/O virtual address: it is
/// translated by the IOTLB to a frontend-virtual address and then by the regions to our mapping.
/// The dirty log is always kept by guest-physical address.
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
    /// <summary>The device IOTLB, or null when addresses are guest-physical / frontend-virtual (no ACCESS_PLATFORM).</summary>
    public Iotlb? Iotlb { get; }

    public static GuestMemory Empty { get; } = new([], [], null, null, 0);

    private GuestMemory(MemoryRegion[] byGuest, MemoryRegion[] byFrontend, DirtyLog? log, Iotlb? iotlb, long generation)
    {
        _byGuest = byGuest;
        _byFrontend = byFrontend;
        Log = log;
        Iotlb = iotlb;
        Generation = generation;
    }

    /// <summary>Builds a snapshot, rejecting overlapping regions (in either address space) and too many regions.</summary>
    public static GuestMemory Create(IEnumerable<MemoryRegion> regions, DirtyLog? log, long generation, Iotlb? iotlb = null)
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
        return new GuestMemory(byGuest, byFrontend, log, iotlb, generation);
    }

    /// <summary>
    /// Logs a write at a ring's log address (SET_VRING_ADDR's log field): guest-physical, or behind a
    /// virtual IOMMU an IOVA, translated like the ring itself (the write it logs went through the same entry).
    /// </summary>
    public void LogRingWrite(ulong logAddress, ulong length)
    {
        if (Log is not { } log) return;
        if (Iotlb is null) log.Mark(logAddress, length);
        else if (TryTranslateIova(logAddress, length, write: true, out _, out ulong gpa)) log.Mark(gpa, length);
    }

    public GuestMemory WithGeneration(long generation) => new(_byGuest, _byFrontend, Log, Iotlb, generation);
    public GuestMemory WithLog(DirtyLog? log, long generation) => new(_byGuest, _byFrontend, log, Iotlb, generation);
    public GuestMemory WithIotlb(Iotlb? iotlb, long generation) => new(_byGuest, _byFrontend, Log, iotlb, generation);

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
    /// Host address of the buffer [address, address+length), which must lie inside one region (and a
    /// writable one if <paramref name="write"/>); with an IOTLB, inside one entry granting the access.
    /// False for anything else, including overflow. The hot path: one lookup, no IOTLB, no allocation.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryTranslate(ulong address, ulong length, bool write, out nint host)
    {
        if (Iotlb is not null) return TryTranslateIova(address, length, write, out host, out _);
        var region = FindByGuest(address);
        host = 0;
        if (region is null) return false;
        ulong offset = address - region.GuestPhysicalAddress;
        if (length > region.Size - offset) return false;
        if (write && !region.Writable) return false;
        host = region.HostAddress + (nint)offset;
        return true;
    }

    /// <summary>Like <see cref="TryTranslate(ulong, ulong, bool, out nint)"/>, also giving the guest-physical address (for the dirty log).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryTranslate(ulong address, ulong length, bool write, out nint host, out ulong gpa)
    {
        if (Iotlb is not null) return TryTranslateIova(address, length, write, out host, out gpa);
        gpa = address;
        return TryTranslate(address, length, write, out host);
    }

    /// <summary>Like <see cref="TryTranslate(ulong, ulong, bool, out nint)"/> for a ring address (frontend-virtual, or an IOVA with an IOTLB).</summary>
    public bool TryTranslateFrontend(ulong uva, ulong length, bool write, out nint host, out ulong gpa)
    {
        if (Iotlb is not null) return TryTranslateIova(uva, length, write, out host, out gpa);
        return TryTranslateUser(uva, length, write, out host, out gpa);
    }

    private bool TryTranslateUser(ulong uva, ulong length, bool write, out nint host, out ulong gpa)
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

    private bool TryTranslateIova(ulong iova, ulong length, bool write, out nint host, out ulong gpa)
    {
        host = 0; gpa = 0;
        if (!Iotlb!.TryFind(iova, out var entry)) return false;
        ulong offset = iova - entry.Iova;
        if (length > entry.Size - offset || (entry.Access & Needed(write)) == 0) return false;
        return TryTranslateUser(entry.UserAddress + offset, length, write, out host, out gpa);
    }

    private static IotlbAccess Needed(bool write) => write ? IotlbAccess.Write : IotlbAccess.Read;

    /// <summary>
    /// Translates the longest prefix of [address, address+length) that is contiguous in our mapping
    /// (one region, and one IOTLB entry if there is an IOTLB): the slow path for buffers that cross
    /// regions or entries, and the way to learn why a translation failed. On success
    /// <paramref name="mapped"/> (at least 1) bytes start at <paramref name="host"/>.
    /// </summary>
    public TranslationStatus TranslatePrefix(ulong address, ulong length, bool write, DeviceAddressKind kind,
        out nint host, out ulong gpa, out ulong mapped)
        => TranslatePrefix(address, length, Needed(write), kind, out host, out gpa, out mapped);

    private TranslationStatus TranslatePrefix(ulong address, ulong length, IotlbAccess access, DeviceAddressKind kind,
        out nint host, out ulong gpa, out ulong mapped)
    {
        host = 0; gpa = 0; mapped = 0;
        bool write = (access & IotlbAccess.Write) != 0;
        if (length == 0 || address + length < address) return TranslationStatus.NotMemory;
        ulong uva = address;
        if (Iotlb is { } tlb)
        {
            if (!tlb.TryFind(address, out var entry)) return TranslationStatus.IotlbMiss;
            if ((entry.Access & access) != access) return TranslationStatus.Denied;
            ulong offset = address - entry.Iova;
            uva = entry.UserAddress + offset;
            length = Math.Min(length, entry.Size - offset);
            kind = DeviceAddressKind.Ring; // an IOTLB entry yields frontend-virtual addresses
        }
        var region = kind == DeviceAddressKind.Ring ? FindByFrontend(uva) : FindByGuest(uva);
        if (region is null) return TranslationStatus.NotMemory;
        if (write && !region.Writable) return TranslationStatus.Denied;
        ulong inRegion = uva - (kind == DeviceAddressKind.Ring ? region.FrontendVirtualAddress : region.GuestPhysicalAddress);
        mapped = Math.Min(length, region.Size - inRegion);
        host = region.HostAddress + (nint)inRegion;
        gpa = region.GuestPhysicalAddress + inRegion;
        return TranslationStatus.Mapped;
    }

    /// <summary>
    /// Whether all of [address, address+length) is guest memory granting every right in
    /// <paramref name="access"/> (a ring area the device both reads and writes needs both from the IOTLB),
    /// possibly across adjacent regions or IOTLB entries; if not, why, and at which address the walk stopped.
    /// </summary>
    public TranslationStatus Check(ulong address, ulong length, IotlbAccess access, DeviceAddressKind kind, out ulong stoppedAt)
    {
        stoppedAt = address;
        if (address + length < address) return TranslationStatus.NotMemory;
        while (length > 0)
        {
            var status = TranslatePrefix(address, length, access, kind, out _, out _, out ulong n);
            if (status != TranslationStatus.Mapped) { stoppedAt = address; return status; }
            address += n;
            length -= n;
        }
        return TranslationStatus.Mapped;
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
    public void Write<T>(ulong address, T value) where T : unmanaged
    {
        if (!TryTranslate(address, (ulong)sizeof(T), true, out nint host, out ulong gpa))
            throw new GuestMemoryException($"guest address {address:x} (+{sizeof(T)}) is not writable guest memory");
        Unsafe.WriteUnaligned((void*)host, value);
        Log?.Mark(gpa, (ulong)sizeof(T));
    }

    /// <summary>Copies bytes out of guest memory, crossing region (and IOTLB entry) boundaries where the address range is contiguous.</summary>
    public void CopyFrom(ulong address, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            nint host = Piece(address, (ulong)destination.Length, write: false, out _, out ulong n);
            new ReadOnlySpan<byte>((void*)host, (int)n).CopyTo(destination);
            destination = destination[(int)n..];
            address += n;
        }
    }

    /// <summary>Copies bytes into guest memory (writable memory only), logging the pages written.</summary>
    public void CopyTo(ulong address, ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            nint host = Piece(address, (ulong)source.Length, write: true, out ulong gpa, out ulong n);
            source[..(int)n].CopyTo(new Span<byte>((void*)host, (int)n));
            Log?.Mark(gpa, n);
            source = source[(int)n..];
            address += n;
        }
    }

    private nint Piece(ulong address, ulong length, bool write, out ulong gpa, out ulong mapped)
    {
        var status = TranslatePrefix(address, length, write, DeviceAddressKind.Buffer, out nint host, out gpa, out mapped);
        return status == TranslationStatus.Mapped ? host
            : throw new GuestMemoryException($"guest address {address:x} is {(status == TranslationStatus.Denied ? "read-only" : "not guest memory")}");
    }
}
