using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Tests.TestSupport;

namespace SharpVhost.Tests.Memory;

public class GuestMemoryTests
{
    private const ulong Page = 4096;

    [Fact]
    public void LookupByGuestAndFrontendAddressAtEveryBoundaryWith509Regions()
    {
        // 509 one-page regions, one page apart in guest space, in reverse order in frontend space.
        const int n = GuestMemory.MaxRegions;
        using var fd = FileDescriptors.CreateMemfd("many", n * (long)Page);
        var regions = new List<MemoryRegion>();
        try
        {
            for (int i = 0; i < n; i++)
                regions.Add(MemoryRegion.Map(fd, new RegionDescription(0x10000 + (ulong)i * 2 * Page, Page, 0x7000_0000_0000 + (ulong)(n - i) * 3 * Page, (ulong)i * Page)));
            var mem = GuestMemory.Create(regions.AsEnumerable().Reverse(), null, 1);
            Assert.Equal(n, mem.Regions.Count);
            for (int i = 0; i < n; i++)
            {
                var r = regions[i];
                ulong g = r.GuestPhysicalAddress, u = r.FrontendVirtualAddress;
                Assert.Same(r, mem.FindByGuest(g));
                Assert.Same(r, mem.FindByGuest(g + Page - 1));
                Assert.Null(mem.FindByGuest(g + Page));      // one past: a hole
                Assert.Null(mem.FindByGuest(g - 1));
                Assert.Same(r, mem.FindByFrontend(u));
                Assert.Same(r, mem.FindByFrontend(u + Page - 1));
                Assert.Null(mem.FindByFrontend(u + Page));
                Assert.Null(mem.FindByFrontend(u - 1));
                Assert.True(mem.TryTranslate(g, Page, true, out nint host));
                Assert.Equal(r.HostAddress, host);
                Assert.True(mem.TryTranslate(g + Page - 1, 1, false, out host));
                Assert.Equal(r.HostAddress + (nint)Page - 1, host);
                Assert.False(mem.TryTranslate(g + Page - 1, 2, false, out _));
                Assert.True(mem.TryTranslateFrontend(u + 8, 8, true, out host, out ulong gpa));
                Assert.Equal((r.HostAddress + 8, g + 8), (host, gpa));
                Assert.False(mem.TryTranslateFrontend(u + 8, Page, false, out _, out _));
            }
            Assert.Null(mem.FindByGuest(0));
            Assert.Null(mem.FindByGuest(ulong.MaxValue));
            Assert.Null(mem.FindByFrontend(0));
            Assert.Null(mem.FindByFrontend(ulong.MaxValue));
            Assert.False(mem.TryTranslate(ulong.MaxValue, 1, false, out _));
            // Each region's page really is the memfd page it names.
            mem.Write(regions[300].GuestPhysicalAddress + 16, 0xABCDEFUL);
            using var view = MemoryMapping.Map(fd, 300 * Page, Page, writable: false);
            Assert.Equal(0xABCDEFUL, BitConverter.ToUInt64(view.GetSpan(16, 8)));

            // The 510th region is refused, by the snapshot and by the domain.
            var extra = MemoryRegion.Map(fd, new RegionDescription(0x1000_0000, Page, 0x1000, 0));
            regions.Add(extra);
            Assert.Throws<GuestMemoryException>(() => GuestMemory.Create(regions, null, 2));
            using var domain = new GuestMemoryDomain();
            domain.ReplaceAll(regions.Take(n).ToArray());
            Assert.Throws<GuestMemoryException>(() => domain.AddRegion(extra));
            Assert.Equal(n, domain.Current.Regions.Count);
            Assert.False(extra.IsUnmapped);
            domain.Clear();
            Assert.All(regions.Take(n), r => Assert.True(r.IsUnmapped));
        }
        finally
        {
            foreach (var r in regions) r.Dispose();
        }
    }

    [Fact]
    public void SingleRegionBoundaries()
    {
        using var guest = new TestGuest(16 * Page);
        var mem = guest.Domain.Current;
        ulong g = TestGuest.GpaBase, end = g + 16 * Page;
        Assert.NotNull(mem.FindByGuest(g));
        Assert.NotNull(mem.FindByGuest(end - 1));
        Assert.Null(mem.FindByGuest(end));
        Assert.Null(mem.FindByGuest(g - 1));
        Assert.NotNull(mem.FindByFrontend(TestGuest.Uva(g)));
        Assert.Null(mem.FindByFrontend(g)); // a GPA is not a frontend address
        Assert.True(mem.TryTranslate(end, 0, false, out _) == false);
        Assert.True(mem.TryTranslate(end - 1, 0, false, out _));
        Assert.False(mem.TryTranslate(g, 16 * Page + 1, false, out _));
        Assert.False(mem.TryTranslate(g + 1, ulong.MaxValue, false, out _));
        Assert.Throws<GuestMemoryException>(() => mem.Read<int>(end - 2));
        Assert.Throws<GuestMemoryException>(() => mem.GetSpan(g, -1, false));
    }

    [Fact]
    public void OverlapsAreRejectedInBothAddressSpaces()
    {
        using var fd = FileDescriptors.CreateMemfd("overlap", 8 * (long)Page);
        using var a = MemoryRegion.Map(fd, new RegionDescription(0x10000, 2 * Page, 0x50000, 0));
        using var guestOverlap = MemoryRegion.Map(fd, new RegionDescription(0x10000 + Page, 2 * Page, 0x90000, 0));
        using var frontendOverlap = MemoryRegion.Map(fd, new RegionDescription(0x90000, 2 * Page, 0x50000 + 2 * Page - 1, 0));
        using var adjacent = MemoryRegion.Map(fd, new RegionDescription(0x10000 + 2 * Page, 2 * Page, 0x50000 + 2 * Page, 2 * Page));
        Assert.Contains("guest-physical", Assert.Throws<GuestMemoryException>(() => GuestMemory.Create([a, guestOverlap], null, 1)).Message);
        Assert.Contains("frontend-virtual", Assert.Throws<GuestMemoryException>(() => GuestMemory.Create([frontendOverlap, a], null, 1)).Message);
        Assert.Throws<GuestMemoryException>(() => GuestMemory.Create([a, a], null, 1));
        var ok = GuestMemory.Create([adjacent, a], null, 1);
        Assert.Equal(2, ok.Regions.Count);
        // Contiguous guest memory across the two regions copies in one call.
        ok.CopyTo(0x10000 + 2 * Page - 3, [1, 2, 3, 4, 5, 6]);
        var back = new byte[6];
        ok.CopyFrom(0x10000 + 2 * Page - 3, back);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6 }, back);
        Assert.Throws<GuestMemoryException>(() => ok.CopyFrom(0x10000 + 4 * Page - 3, new byte[6])); // runs off the end

        using var domain = new GuestMemoryDomain();
        domain.AddRegion(a);
        long generation = domain.Current.Generation;
        Assert.Throws<GuestMemoryException>(() => domain.AddRegion(guestOverlap));
        Assert.Throws<GuestMemoryException>(() => domain.AddRegion(frontendOverlap));
        Assert.Equal(generation, domain.Current.Generation);
        Assert.Single(domain.Current.Regions);
        Assert.False(domain.RemoveRegion(guestOverlap.Description));
        Assert.False(a.IsUnmapped);
    }

    [Fact]
    public void ImpossibleRegionsAreRejectedBeforeMapping()
    {
        using var fd = FileDescriptors.CreateMemfd("bad", 4 * (long)Page);
        Assert.Contains("zero size", Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(0, 0, 0, 0))).Message);
        Assert.Contains("wraps", Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(ulong.MaxValue - Page + 2, Page, 0, 0))).Message);
        Assert.Contains("wraps", Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(0, Page, ulong.MaxValue - 10, 0))).Message);
        Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(0, Page, 0, ulong.MaxValue - 10)));
        Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(0, Page, 0, (ulong)long.MaxValue)));
        // Past the end of the file: touching it would SIGBUS, so it is never mapped.
        Assert.Contains("past the end", Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(0, 5 * Page, 0, 0))).Message);
        Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(0, 2 * Page, 0, 3 * Page)));
        Assert.Throws<GuestMemoryException>(() => MemoryRegion.Map(fd, new RegionDescription(0, Page, 0, 3 * Page + 1)));
        // Exactly to the end is fine, and so is an offset that is not page aligned.
        using var last = MemoryRegion.Map(fd, new RegionDescription(0, Page, 0, 3 * Page));
        using var unaligned = MemoryRegion.Map(fd, new RegionDescription(0x9000, 100, 0x9000, 2 * Page + 10));
        Assert.NotEqual(0, last.HostAddress);
        var mem = GuestMemory.Create([unaligned], null, 1);
        mem.Write(0x9000, (byte)77);
        using var view = MemoryMapping.Map(fd, 2 * Page, Page, writable: false);
        Assert.Equal(77, view.GetSpan(10, 1)[0]);
        Assert.Equal(0, mem.Read<byte>(0x9000 + 99));
        Assert.Throws<GuestMemoryException>(() => mem.Read<byte>(0x9000 + 100));
    }

    [Fact]
    public void ReadOnlyRegionIsMappedReadOnlyAndNeverWritten()
    {
        using var fd = FileDescriptors.CreateMemfd("ro", 2 * (long)Page);
        using var ro = MemoryRegion.Map(fd, new RegionDescription(0, 2 * Page, 0x1000, 0), writable: false);
        Assert.False(ro.Writable);
        var mem = GuestMemory.Create([ro], null, 1);
        Assert.Throws<GuestMemoryException>(() => mem.Write(8, 1L));
        Assert.Throws<GuestMemoryException>(() => mem.CopyTo(8, [1]));
        Assert.Throws<GuestMemoryException>(() => mem.GetSpan(8, 1, write: true));
        Assert.False(mem.TryTranslate(8, 1, write: true, out _));
        Assert.False(mem.TryTranslateFrontend(0x1008, 1, write: true, out _, out _));
        Assert.True(mem.TryTranslate(8, 1, write: false, out _));
        Assert.Equal(0L, mem.Read<long>(8));
    }

    [Fact]
    public void DomainChangesPublishNewGenerationsAndUnmapWhatTheyRetire()
    {
        using var guest = new TestGuest(8 * Page, new RegionSpec(0, 4 * Page));
        var domain = guest.Domain;
        var first = domain.Current;
        var original = first.Regions[0];
        var added = guest.MapRegion(new RegionSpec(4 * Page, 4 * Page));
        domain.AddRegion(added);
        var second = domain.Current;
        Assert.True(second.Generation > first.Generation);
        Assert.Equal(2, second.Regions.Count);
        Assert.Single(first.Regions); // snapshots are immutable
        domain.Invalidate();
        Assert.True(domain.Current.Generation > second.Generation);
        Assert.Same(second.Regions[0], domain.Current.Regions[0]);
        var replacement = guest.MapRegion(new RegionSpec(0, 4 * Page));
        domain.ReplaceAll([replacement, added]);
        Assert.True(original.IsUnmapped);
        Assert.False(added.IsUnmapped);
        Assert.True(domain.RemoveRegion(added.Description));
        Assert.True(added.IsUnmapped);
        Assert.False(domain.RemoveRegion(added.Description));
        long grace = domain.GracePeriods;
        domain.Clear();
        Assert.True(replacement.IsUnmapped);
        Assert.Empty(domain.Current.Regions);
        Assert.Equal(grace + 1, domain.GracePeriods);
    }
}
