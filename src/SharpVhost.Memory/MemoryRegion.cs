using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;

namespace SharpVhost.Memory;

/// <summary>Where a region lives, as a frontend describes it (vhost-user's memory region payload).</summary>
public readonly record struct RegionDescription(ulong GuestPhysicalAddress, ulong Size, ulong FrontendVirtualAddress, ulong MmapOffset)
{
    public ulong GuestPhysicalEnd => GuestPhysicalAddress + Size;
    public ulong FrontendVirtualEnd => FrontendVirtualAddress + Size;

    /// <summary>Rejects what no real frontend sends: empty, wrapping or fd-offset-overflowing regions.</summary>
    public void Validate()
    {
        if (Size == 0) throw new GuestMemoryException("memory region has zero size");
        if (GuestPhysicalAddress + Size < GuestPhysicalAddress) throw new GuestMemoryException($"memory region at guest address {GuestPhysicalAddress:x} wraps around");
        if (FrontendVirtualAddress + Size < FrontendVirtualAddress) throw new GuestMemoryException($"memory region at frontend address {FrontendVirtualAddress:x} wraps around");
        if (MmapOffset + Size < MmapOffset || MmapOffset + Size > long.MaxValue) throw new GuestMemoryException("memory region's mmap offset plus size overflows");
    }
}

/// <summary>
/// One region of guest memory mapped into this process. Owns its mapping: it is unmapped only when
/// the region is retired through <see cref="GuestMemoryDomain"/>, after the grace period.
/// </summary>
public sealed class MemoryRegion : IDisposable
{
    private readonly MemoryMapping _mapping;
    private readonly ulong _startInMapping;

    public RegionDescription Description { get; }
    public ulong GuestPhysicalAddress => Description.GuestPhysicalAddress;
    public ulong Size => Description.Size;
    public ulong FrontendVirtualAddress => Description.FrontendVirtualAddress;
    public bool Writable => _mapping.Writable;

    /// <summary>Host address of the region's first byte; valid until the region is disposed.</summary>
    public nint HostAddress => _mapping.Address + (nint)_startInMapping;

    public bool IsUnmapped => _mapping.IsUnmapped;

    private MemoryRegion(RegionDescription description, MemoryMapping mapping, ulong startInMapping)
    {
        Description = description;
        _mapping = mapping;
        _startInMapping = startInMapping;
    }

    /// <summary>
    /// Maps a region from a descriptor. The region must lie inside the file: touching a page past
    /// its end would raise SIGBUS and kill the process, so that is checked here, once.
    /// A descriptor that refuses a writable mapping is mapped read-only and never written.
    /// </summary>
    public static MemoryRegion Map(SafeFileHandle fd, RegionDescription description, bool writable = true)
    {
        description.Validate();
        long fileSize = FileDescriptors.SizeOf(fd);
        if (description.MmapOffset + description.Size > (ulong)fileSize)
            throw new GuestMemoryException($"memory region [{description.MmapOffset:x}, +{description.Size:x}) lies past the end of its file ({fileSize:x} bytes)");
        ulong page = (ulong)FileDescriptors.PageSize;
        ulong alignedOffset = description.MmapOffset / page * page;
        ulong startInMapping = description.MmapOffset - alignedOffset;
        MemoryMapping mapping;
        try
        {
            mapping = MemoryMapping.Map(fd, alignedOffset, description.Size + startInMapping, writable);
        }
        catch (IOException) when (writable)
        {
            mapping = MemoryMapping.Map(fd, alignedOffset, description.Size + startInMapping, writable: false);
        }
        return new MemoryRegion(description, mapping, startInMapping);
    }

    public bool ContainsGuest(ulong gpa) => gpa - GuestPhysicalAddress < Size;
    public bool ContainsFrontend(ulong uva) => uva - FrontendVirtualAddress < Size;

    /// <summary>Unmaps. Only the invalidation domain (or the owner of an unpublished region) calls this.</summary>
    public void Dispose() => _mapping.Dispose();

    public override string ToString() => $"gpa [{GuestPhysicalAddress:x}, {Description.GuestPhysicalEnd:x}) uva {FrontendVirtualAddress:x}{(Writable ? "" : " read-only")}";
}
