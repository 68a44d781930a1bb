using CsCheck;
using SharpVhost.Memory;

namespace SharpVhost.Tests.Iommu;

/// <summary>The IOTLB cache on its own: lookups, replacement of overlapped entries, invalidation cuts, limits.</summary>
public class IotlbTests
{
    private const ulong Page = 4096;

    [Fact]
    public void LookupFindsTheEntryContainingAnAddressAndNothingOutside()
    {
        var tlb = Iotlb.Empty
            .Add(new IotlbEntry(0x10000, 0x2000, 0x7f0000, IotlbAccess.Read))
            .Add(new IotlbEntry(0x40000, 0x1000, 0x900000, IotlbAccess.ReadWrite));
        Assert.True(tlb.TryFind(0x10000, out var e));
        Assert.Equal(0x7f0000ul, e.UserAddress);
        Assert.True(tlb.TryFind(0x11fff, out e));
        Assert.Equal(IotlbAccess.Read, e.Access);
        Assert.False(tlb.TryFind(0x12000, out _));
        Assert.False(tlb.TryFind(0xffff, out _));
        Assert.True(tlb.TryFind(0x40fff, out e));
        Assert.Equal(0x900000ul, e.UserAddress);
        Assert.False(tlb.TryFind(0x41000, out _));
    }

    [Fact]
    public void AnUpdateReplacesWhatItOverlapsAndKeepsTheRest()
    {
        var tlb = Iotlb.Empty.Add(new IotlbEntry(0, 4 * Page, 0x100000, IotlbAccess.Read))
            .Add(new IotlbEntry(Page, Page, 0x800000, IotlbAccess.Write));
        Assert.Equal(3, tlb.Count);
        Assert.True(tlb.TryFind(0, out var e)); Assert.Equal(0x100000ul, e.UserAddress);
        Assert.True(tlb.TryFind(Page + 5, out e)); Assert.Equal(0x800000ul, e.UserAddress); Assert.Equal(IotlbAccess.Write, e.Access);
        Assert.True(tlb.TryFind(2 * Page, out e)); Assert.Equal(0x100000ul + 2 * Page, e.UserAddress + (2 * Page - e.Iova));
    }

    [Fact]
    public void InvalidationCutsEntriesAndLeavesTheOutsidePieces()
    {
        var tlb = Iotlb.Empty.Add(new IotlbEntry(0x1000, 0x4000, 0xa000, IotlbAccess.ReadWrite));
        var cut = tlb.Invalidate(0x2000, 0x1000);
        Assert.True(cut.TryFind(0x1fff, out var low)); Assert.Equal(0xa000ul, low.UserAddress);
        Assert.False(cut.TryFind(0x2000, out _));
        Assert.False(cut.TryFind(0x2fff, out _));
        Assert.True(cut.TryFind(0x3000, out var high));
        Assert.Equal(0xc000ul, high.UserAddress + (0x3000 - high.Iova));
        Assert.Same(cut, cut.Invalidate(0x2000, 0x1000)); // nothing there: no new table
        Assert.Equal(0, tlb.Invalidate(0, ulong.MaxValue).Count); // size past 2^64: everything
    }

    [Theory]
    [InlineData(0x1000ul, 0ul, 0x1000ul, (byte)1)]                  // empty
    [InlineData(ulong.MaxValue - 10, 0x1000ul, 0x1000ul, (byte)1)]   // iova wraps
    [InlineData(0x1000ul, 0x1000ul, ulong.MaxValue - 10, (byte)1)]   // uva wraps
    [InlineData(0x1000ul, 0x1000ul, 0x1000ul, (byte)0)]              // grants nothing
    [InlineData(0x1000ul, 0x1000ul, 0x1000ul, (byte)4)]              // unknown right
    public void UpdatesThatMakeNoSenseAreRefused(ulong iova, ulong size, ulong uva, byte access)
        => Assert.Throws<GuestMemoryException>(() => Iotlb.Empty.Add(new IotlbEntry(iova, size, uva, (IotlbAccess)access)));

    [Fact]
    public void AFrontendCannotGrowTheCacheWithoutBound()
    {
        var tlb = Iotlb.Empty;
        for (ulong i = 0; i < Iotlb.MaxEntries + 100; i++) tlb = tlb.Add(new IotlbEntry(i * 2 * Page, Page, i * Page, IotlbAccess.Read));
        Assert.Equal(Iotlb.MaxEntries, tlb.Count);
        Assert.False(tlb.TryFind(0, out _)); // the oldest went first
        Assert.True(tlb.TryFind((Iotlb.MaxEntries + 99) * 2 * Page, out _));
    }

    /// <summary>Any sequence of updates and invalidations translates every page as a page-by-page model says.</summary>
    [Fact]
    public void TranslationsMatchAPageModelAfterAnySequence()
    {
        var op = Gen.Select(Gen.Bool, Gen.ULong[0, 31], Gen.ULong[1, 8], Gen.ULong[0, 63], Gen.Byte[1, 3]);
        op.Array[1, 40].Sample(ops =>
        {
            var tlb = Iotlb.Empty;
            var model = new Dictionary<ulong, (ulong uva, IotlbAccess access)>();
            foreach (var (update, first, pages, target, access) in ops)
            {
                if (update)
                {
                    tlb = tlb.Add(new IotlbEntry(first * Page, pages * Page, target * Page, (IotlbAccess)access));
                    for (ulong p = 0; p < pages; p++) model[first + p] = ((target + p) * Page, (IotlbAccess)access);
                }
                else
                {
                    tlb = tlb.Invalidate(first * Page, pages * Page);
                    for (ulong p = 0; p < pages; p++) model.Remove(first + p);
                }
            }
            for (ulong page = 0; page < 40; page++)
            {
                bool found = tlb.TryFind(page * Page + 7, out var e);
                if (!model.TryGetValue(page, out var expected)) { if (found) return false; continue; }
                if (!found || e.Access != expected.access || e.UserAddress + (page * Page + 7 - e.Iova) != expected.uva + 7) return false;
            }
            var entries = tlb.Entries;
            for (int i = 1; i < entries.Count; i++) if (entries[i].Iova < entries[i - 1].IovaEnd) return false; // sorted, no overlap
            // Overlaps (which decides whether an update waits for readers) agrees with the model for every range.
            for (ulong first = 0; first < 40; first++)
                for (ulong pages = 1; first + pages <= 41; pages++)
                {
                    bool any = false;
                    for (ulong p = first; p < first + pages && !any; p++) any = model.ContainsKey(p);
                    if (tlb.Overlaps(first * Page, pages * Page) != any) return false;
                }
            return tlb.Overlaps(0, ulong.MaxValue) == (model.Count > 0); // an end past 2^64 reaches the top
        }, iter: 2000);
    }
}
