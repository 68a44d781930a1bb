using SharpVhost.Interop;
using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio;

/// <summary>
/// INFLIGHT_SHMFD recovery: a backend that dies with requests in flight must, after restarting with the
/// same inflight region, resubmit exactly the requests the driver has not seen completed, oldest first.
/// </summary>
public sealed class SplitInflightTests
{
    private const int Size = 8;

    private static (QueueHarness Harness, MemoryMapping Region) Start(TestGuest guest, MetadataAccess access)
    {
        var h = new QueueHarness(guest, Size, access);
        var region = MemoryMapping.Anonymous(SplitInflightTracker.RegionSize(Size));
        h.Device.Inflight = new SplitInflightTracker(region.Address, Size);
        Assert.True(h.Attach());
        return (h, region);
    }

    /// <summary>A "restarted backend": a fresh device queue on the same rings and inflight region, with a stale base.</summary>
    private static SplitQueue Restart(QueueHarness h, MemoryMapping region, MetadataAccess access, ushort staleBase)
    {
        var device = new SplitQueue(0, access);
        device.SetSize(Size);
        device.SetRings(QueueHarness.RingsFor(h.Placement));
        device.SetBase(staleBase);
        device.Inflight = new SplitInflightTracker(region.Address, Size);
        return device;
    }

    private static ushort Offer(QueueHarness h, ulong bufferGpa)
    {
        Assert.True(h.Driver.TryAdd([new DriverBuffer(bufferGpa, 16, false)], out ushort head));
        h.Driver.Publish();
        return head;
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void Resubmits_requests_in_flight_at_the_crash_in_pop_order(MetadataAccess access)
    {
        using var guest = new TestGuest(1 << 20);
        var (h, region) = Start(guest, access);
        using var regionLifetime = region;
        ushort[] heads = [.. Enumerable.Range(0, 4).Select(i => Offer(h, TestGuest.Gpa(0x10000 + (ulong)i * 64)))];
        var popped = new List<ushort>();
        for (int i = 0; i < 4; i++)
        {
            Assert.True(h.Device.TryPop(h.Chain));
            popped.Add(h.Chain.Id);
        }
        // Complete the second one only, out of order.
        h.Device.AddUsed(popped[1], 0);
        h.Device.FlushUsed();
        Assert.True(h.Driver.TryGetUsed(out ushort done, out _));
        Assert.Equal(popped[1], done);

        // Crash. The frontend restores a base of used.idx (what QEMU does when GET_VRING_BASE fails).
        var restarted = Restart(h, region, access, staleBase: 1);
        Assert.True(restarted.Attach(guest.Domain.Current));
        var resubmitted = new List<ushort>();
        while (restarted.TryPop(h.Chain)) resubmitted.Add(h.Chain.Id);
        Assert.Equal([popped[0], popped[2], popped[3]], resubmitted);
        Assert.Equal(3, restarted.Resubmitted);
        Assert.Equal(4, restarted.LastAvailIndex); // no avail entry is popped twice

        // Completing them reaches the driver; a new request after that is popped from the ring normally.
        foreach (var head in resubmitted) restarted.AddUsed(head, 0);
        restarted.FlushUsed();
        var completed = new List<ushort>();
        while (h.Driver.TryGetUsed(out ushort id, out _)) completed.Add(id);
        Assert.Equal(resubmitted, completed);
        ushort fresh = Offer(h, TestGuest.Gpa(0x20000));
        Assert.True(restarted.TryPop(h.Chain));
        Assert.Equal(fresh, h.Chain.Id);
        Assert.DoesNotContain(fresh, heads.Except(completed).Except([done]));
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void A_batch_published_just_before_the_crash_is_not_resubmitted(MetadataAccess access)
    {
        using var guest = new TestGuest(1 << 20);
        var (h, region) = Start(guest, access);
        using var regionLifetime = region;
        for (int i = 0; i < 3; i++) Offer(h, TestGuest.Gpa(0x10000 + (ulong)i * 64));
        var popped = new List<ushort>();
        while (h.Device.TryPop(h.Chain)) popped.Add(h.Chain.Id);
        h.Device.AddUsed(popped[0], 0);
        h.Device.AddUsed(popped[2], 0);
        h.Device.FlushUsed();

        // Simulate dying between publishing used.idx and clearing the batch's inflight flags:
        // put the flags back and the region's used_idx behind the ring's.
        var bytes = region.GetSpan(0, (int)SplitInflightTracker.RegionSize(Size));
        bytes[16 + popped[0] * 16] = 1;
        bytes[16 + popped[2] * 16] = 1;
        BitConverter.TryWriteBytes(bytes[14..16], (ushort)0);

        var restarted = Restart(h, region, access, staleBase: 0);
        Assert.True(restarted.Attach(guest.Domain.Current));
        var resubmitted = new List<ushort>();
        while (restarted.TryPop(h.Chain)) resubmitted.Add(h.Chain.Id);
        Assert.Equal([popped[1]], resubmitted);
    }

    [Fact]
    public void A_region_for_another_queue_shape_starts_afresh()
    {
        using var guest = new TestGuest(1 << 20);
        var (h, region) = Start(guest, MetadataAccess.Direct);
        using var regionLifetime = region;
        var bytes = region.GetSpan(0, (int)SplitInflightTracker.RegionSize(Size));
        BitConverter.TryWriteBytes(bytes[10..12], (ushort)(Size * 2)); // desc_num from another frontend
        bytes[16] = 1; // garbage "in flight" entry
        var restarted = Restart(h, region, MetadataAccess.Direct, staleBase: 0);
        Assert.True(restarted.Attach(guest.Domain.Current));
        Assert.False(restarted.TryPop(h.Chain));
        Assert.False(restarted.IsBroken);
        Assert.Equal(0, bytes[16]);
    }
}
