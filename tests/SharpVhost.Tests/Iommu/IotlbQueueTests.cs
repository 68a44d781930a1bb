using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Iommu;

/// <summary>
/// A device queue behind a virtual IOMMU: ring and buffer addresses are IOVAs that mean nothing
/// without the IOTLB (they are far from both the guest-physical and the frontend-virtual addresses),
/// misses back out without consuming anything, and the entry's rights are honoured.
/// </summary>
public sealed class IotlbQueueTests : IDisposable
{
    private const ulong MiB = 1 << 20;
    private const ulong Page = 4096;
    /// <summary>IOVA = GPA + this; deliberately neither guest-physical nor frontend-virtual.</summary>
    private const ulong IovaDelta = 0x30_0000_0000;
    private static readonly ulong Data = TestGuest.Gpa(0x10000);

    private readonly TestGuest _guest = new(MiB);

    public void Dispose() => _guest.Dispose();

    private static ulong Iova(ulong gpa) => gpa + IovaDelta;

    private void Map(ulong gpa, ulong size, IotlbAccess access)
        => _guest.Domain.UpdateIotlb(new IotlbEntry(Iova(gpa), size, TestGuest.Uva(gpa), access));

    /// <summary>A queue whose rings the device knows by IOVA, with an IOTLB mapping just the ring pages.</summary>
    private QueueHarness RingBehindIommu(MetadataAccess access, bool mapRings = true)
    {
        var h = new QueueHarness(_guest, 16, access);
        var p = h.Placement;
        h.Device.SetRings(new RingAddresses(Iova(p.Descriptors), Iova(p.Avail), Iova(p.Used)));
        _guest.Domain.UseIotlb(true);
        if (mapRings)
        {
            ulong start = p.Descriptors & ~(Page - 1);
            Map(start, (p.End - start + Page - 1) & ~(Page - 1), IotlbAccess.ReadWrite);
        }
        return h;
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void RingsAndBuffersAreReachedOnlyThroughTheIotlb(MetadataAccess access)
    {
        var h = RingBehindIommu(access);
        Map(Data, 2 * Page, IotlbAccess.Read);
        Map(Data + 2 * Page, Page, IotlbAccess.Write);
        new Random(1).NextBytes(_guest.Bytes(Data, 5000));
        Assert.True(h.Driver.TryAdd([new DriverBuffer(Iova(Data), 5000, false), new DriverBuffer(Iova(Data + 2 * Page), 100, true)], out ushort head));
        h.Driver.Publish();

        Assert.True(h.Attach());
        Assert.Equal(access == MetadataAccess.Direct, h.Device.UsingDirectAccess);
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.Equal(head, h.Chain.Id);
        Assert.Equal(5000u, h.Chain.ReadableBytes);
        var bytes = new byte[5000];
        Assert.Equal(5000, h.Chain.CopyFromReadable(0, bytes));
        Assert.Equal(_guest.Bytes(Data, 5000).ToArray(), bytes);
        // The segment names the guest-physical page (what the dirty log needs), not the IOVA.
        Assert.Equal(Data + 2 * Page, h.Chain.Writable[0].GuestAddress);
        h.Chain.CopyToWritable(0, "written through an IOVA"u8);
        h.Device.Push(h.Chain, 23);
        Assert.True(h.Driver.TryGetUsed(out ushort id, out uint length));
        Assert.Equal((head, 23u), (id, length));
        Assert.Equal("written through an IOVA"u8.ToArray(), _guest.Bytes(Data + 2 * Page, 23).ToArray());
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AMissingRingTranslationIsAMissNotAnError(MetadataAccess access)
    {
        var h = RingBehindIommu(access, mapRings: false);
        Assert.False(h.Attach());
        Assert.False(h.Device.IsBroken);
        Assert.Equal(Iova(h.Placement.Descriptors), h.Device.PendingMiss!.Value.Iova);
        Map(h.Placement.Descriptors & ~(Page - 1), Page, IotlbAccess.ReadWrite);
        Assert.True(h.Attach());
        Assert.Null(h.Device.PendingMiss);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void ABufferMissBacksOutThePopAndTheSameChainComesAfterTheUpdate(MetadataAccess access)
    {
        var h = RingBehindIommu(access);
        Map(Data, Page, IotlbAccess.Read);
        Assert.True(h.Driver.TryAdd([new DriverBuffer(Iova(Data), 100, false), new DriverBuffer(Iova(Data + 8 * Page), 64, true)], out ushort head));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.False(h.Device.TryPop(h.Chain));
        Assert.False(h.Device.IsBroken);
        Assert.Equal(new IotlbMiss(Iova(Data + 8 * Page), Write: true), h.Device.PendingMiss);
        Assert.Equal(0, h.Device.LastAvailIndex); // nothing consumed
        Assert.False(h.Device.TryPop(h.Chain));   // and nothing more until the next section

        Map(Data + 8 * Page, Page, IotlbAccess.Write);
        Assert.True(h.Attach());
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.Equal(head, h.Chain.Id);
        Assert.Equal(1, h.Device.LastAvailIndex);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AReadOnlyEntryIsNeverWrittenThrough(MetadataAccess access)
    {
        var h = RingBehindIommu(access);
        Map(Data, Page, IotlbAccess.Read);
        var before = _guest.Bytes(Data, 64).ToArray();
        Assert.True(h.Driver.TryAdd([new DriverBuffer(Iova(Data), 64, true)], out _));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.False(h.Device.TryPop(h.Chain));
        Assert.True(h.Device.IsBroken);
        Assert.Contains("not writable", h.Device.BrokenReason);
        Assert.Equal(before, _guest.Bytes(Data, 64).ToArray());
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AWriteOnlyEntryIsNotRead(MetadataAccess access)
    {
        var h = RingBehindIommu(access);
        Map(Data, Page, IotlbAccess.Write);
        Assert.True(h.Driver.TryAdd([new DriverBuffer(Iova(Data), 64, false)], out _));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.False(h.Device.TryPop(h.Chain));
        Assert.True(h.Device.IsBroken);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AUsedRingMappedReadOnlyIsRefused(MetadataAccess access)
    {
        var h = RingBehindIommu(access, mapRings: false);
        var p = h.Placement;
        ulong start = p.Descriptors & ~(Page - 1);
        Map(start, (p.End - start + Page - 1) & ~(Page - 1), IotlbAccess.Read);
        Assert.False(h.Attach());
        Assert.True(h.Device.IsBroken);
        Assert.Contains("used ring", h.Device.BrokenReason);
    }

    /// <summary>
    /// The device reads the used ring too (its index), so it needs both rights there: a write-only entry
    /// once passed the direct accessor's check (write only) while the checked one asked for both.
    /// </summary>
    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AUsedRingMappedWriteOnlyIsRefusedByBothAccessors(MetadataAccess access)
    {
        var h = RingBehindIommu(access);
        ulong used = Data + 4 * Page; // a page of its own, mapped write-only
        Map(used, Page, IotlbAccess.Write);
        var p = h.Placement;
        h.Device.SetRings(new RingAddresses(Iova(p.Descriptors), Iova(p.Avail), Iova(used)));
        Assert.False(h.Attach());
        Assert.False(h.Device.UsingDirectAccess);
        Assert.True(h.Device.IsBroken);
        Assert.Contains("used ring", h.Device.BrokenReason);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AnInvalidatedRingIsNotUsedAgainUntilRemapped(MetadataAccess access)
    {
        var h = RingBehindIommu(access);
        Assert.True(h.Attach());
        long graceBefore = _guest.Domain.GracePeriods;
        _guest.Domain.InvalidateIotlb(Iova(h.Placement.Descriptors & ~(Page - 1)), Page);
        Assert.True(_guest.Domain.GracePeriods > graceBefore);
        Assert.Equal(1, _guest.Domain.IotlbInvalidations);
        Assert.False(h.Attach()); // the cached ring pointers were dropped: re-translation misses
        Assert.NotNull(h.Device.PendingMiss);
        Assert.False(h.Device.IsBroken);
    }

    [Fact]
    public void UpdatesArePublishedWithoutAGracePeriodButRemapsWait()
    {
        _guest.Domain.UseIotlb(true);
        long grace = _guest.Domain.GracePeriods;
        Map(Data, Page, IotlbAccess.Read);
        Assert.Equal(grace, _guest.Domain.GracePeriods);
        Map(Data, Page, IotlbAccess.ReadWrite); // replaces a translation a worker may be using
        Assert.Equal(grace + 1, _guest.Domain.GracePeriods);
    }

    [Fact]
    public void TheUsedRingLogAddressIsAnIovaTooAndIsLoggedByGuestPhysicalPage()
    {
        ulong logBytes = (TestGuest.GpaBase + MiB) / Page / 8;
        using var logFd = FileDescriptors.CreateMemfd("iotlb-log", (long)logBytes);
        using var view = MemoryMapping.Map(logFd, 0, logBytes, writable: true);
        var h = RingBehindIommu(MetadataAccess.Direct);
        var p = h.Placement;
        h.Device.SetRings(new RingAddresses(Iova(p.Descriptors), Iova(p.Avail), Iova(p.Used), Iova(p.Used), LogUsed: true));
        _guest.Domain.SetLog(new DirtyLog(MemoryMapping.Map(logFd, 0, logBytes, writable: true), 0, logBytes));
        Map(Data, Page, IotlbAccess.Read);
        Assert.True(h.Driver.TryAdd([new DriverBuffer(Iova(Data), 8, false)], out _));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.True(h.Device.TryPop(h.Chain));
        h.Device.Push(h.Chain, 0);
        ulong page = p.Used / Page;
        Assert.NotEqual(0, view.GetSpan(page / 8, 1)[0] & (1 << (int)(page % 8)));
    }
}
