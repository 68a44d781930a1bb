using SharpVhost.Interop;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// INFLIGHT_SHMFD recovery on a packed ring: a backend that dies with buffers in flight must, after
/// restarting with the same inflight region and whatever stale base the frontend restores, resubmit
/// exactly the buffers the driver has not seen completed, oldest first, even where used descriptors
/// have overwritten their ring slots.
/// </summary>
public sealed class PackedInflightTests
{
    public static TheoryData<MetadataAccess> Accessors() => new() { MetadataAccess.Direct, MetadataAccess.Checked };

    private static MemoryMapping Region(int size) => MemoryMapping.Anonymous(PackedInflightTracker.RegionSize(size));

    private static PackedQueue Restart(PackedRingFixture f, MemoryMapping region, MetadataAccess access, uint staleBase)
    {
        var device = new PackedQueue(0, access);
        device.SetSize(f.Size);
        device.SetRings(f.Rings());
        device.SetBase(staleBase);
        device.Inflight = new PackedInflightTracker(region.Address, f.Size);
        Assert.True(device.Attach(f.Memory), device.BrokenReason);
        return device;
    }

    private static ushort Offer(PackedRingFixture f, int descriptors)
    {
        var buffers = Enumerable.Range(0, descriptors).Select(i => new DriverBuffer(f.AllocateBuffer(32), (uint)(16 + i), i == descriptors - 1)).ToArray();
        Assert.True(f.Driver.TryAdd(buffers, out ushort id));
        f.Driver.Publish();
        return id;
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Resubmits_buffers_in_flight_at_the_crash_oldest_first(MetadataAccess access)
    {
        using var f = new PackedRingFixture(6, access);
        using var region = Region(6);
        f.Device.Inflight = new PackedInflightTracker(region.Address, 6);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        // A (2 descriptors, slots 0-1), B (1, slot 2), C (3, slots 3-5): the ring is full.
        ushort a = Offer(f, 2), b = Offer(f, 1), c = Offer(f, 3);
        var popped = new List<(ushort Id, uint Bytes)>();
        while (f.Device.TryPop(chain)) popped.Add((chain.Id, chain.ReadableBytes + chain.WritableBytes));
        Assert.Equal([a, b, c], popped.Select(p => p.Id));
        // B completes first: its used descriptor lands in slot 0, over A's first descriptor.
        f.Device.AddUsed(b, 0);
        f.Device.FlushUsed();
        Assert.True(f.Driver.TryGetUsed(out ushort done, out _));
        Assert.Equal(b, done);
        // The driver reuses the slot it got back: D goes into slot 0 of the next pass.
        ushort d = Offer(f, 1);
        Assert.True(f.Device.TryPop(chain));
        Assert.Equal(d, chain.Id);

        // Crash. The frontend restores the base it last knew: the very start.
        var restarted = Restart(f, region, access, staleBase: 0x8000_8000);
        var resubmitted = new List<(ushort Id, uint Bytes, int Descriptors)>();
        while (restarted.TryPop(chain)) resubmitted.Add((chain.Id, chain.ReadableBytes + chain.WritableBytes, chain.DescriptorCount));
        Assert.False(restarted.IsBroken, restarted.BrokenReason);
        Assert.Equal([a, c, d], resubmitted.Select(r => r.Id));
        Assert.Equal([popped[0].Bytes, popped[2].Bytes], resubmitted.Take(2).Select(r => r.Bytes));
        Assert.Equal([2, 3, 1], resubmitted.Select(r => r.Descriptors));
        Assert.Equal(3, restarted.Resubmitted);

        // Completing them reaches the driver, in completion order; then a fresh buffer pops from the ring.
        foreach (var id in new[] { c, a, d }) restarted.AddUsed(id, 0);
        restarted.FlushUsed();
        var completed = new List<ushort>();
        while (f.Driver.TryGetUsed(out ushort id, out _)) completed.Add(id);
        Assert.Equal([c, a, d], completed);
        Assert.Equal(6, f.Driver.FreeCount);
        ushort fresh = Offer(f, 2);
        Assert.True(restarted.TryPop(chain), restarted.BrokenReason);
        Assert.Equal(fresh, chain.Id);
        restarted.Push(chain, 0);
        Assert.True(f.Driver.TryGetUsed(out ushort last, out _));
        Assert.Equal(fresh, last);
    }

    [Theory, MemberData(nameof(Accessors))]
    public void A_batch_exposed_just_before_the_crash_is_not_resubmitted(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        using var region = Region(8);
        f.Device.Inflight = new PackedInflightTracker(region.Address, 8);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        ushort[] ids = [Offer(f, 1), Offer(f, 2), Offer(f, 1)];
        while (f.Device.TryPop(chain)) { }
        // Die between exposing the batch and recording it: keep the region as it was before the flush.
        byte[] before = region.GetSpan(0, (int)PackedInflightTracker.RegionSize(8)).ToArray();
        f.Device.AddUsed(ids[0], 0);
        f.Device.AddUsed(ids[2], 0);
        f.Device.FlushUsed();
        before.CopyTo(region.GetSpan(0, before.Length));

        var restarted = Restart(f, region, access, staleBase: 0x8000_8000);
        var resubmitted = new List<ushort>();
        while (restarted.TryPop(chain)) resubmitted.Add(chain.Id);
        Assert.Equal([ids[1]], resubmitted);
        restarted.Push(chain, 0);
        var completed = new List<ushort>();
        while (f.Driver.TryGetUsed(out ushort id, out _)) completed.Add(id);
        Assert.Equal([ids[0], ids[2], ids[1]], completed);
    }

    [Theory, MemberData(nameof(Accessors))]
    public void A_region_for_another_shape_or_garbage_starts_afresh(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        using var region = Region(4);
        var bytes = region.GetSpan(0, (int)PackedInflightTracker.RegionSize(4));
        bytes.Fill(0xa5); // neither our version nor our size
        f.Device.Inflight = new PackedInflightTracker(region.Address, 4);
        Assert.True(f.Attach());
        Assert.False(f.Device.TryPop(new DescriptorChain()));
        Assert.False(f.Device.IsBroken);
        Assert.Equal(0, f.Device.Resubmitted);
        Assert.Equal(0, bytes[16]); // entries cleared
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Entries_the_frontend_corrupted_are_dropped(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        using var region = Region(4);
        f.Device.Inflight = new PackedInflightTracker(region.Address, 4);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        ushort a = Offer(f, 1), b = Offer(f, 1);
        while (f.Device.TryPop(chain)) { }
        var bytes = region.GetSpan(0, (int)PackedInflightTracker.RegionSize(4));
        BitConverter.TryWriteBytes(bytes[(16 + b * 16 + 2)..], (ushort)9); // b claims 9 descriptors in a ring of 4
        var restarted = Restart(f, region, access, staleBase: 0x8000_8000);
        var resubmitted = new List<ushort>();
        while (restarted.TryPop(chain)) resubmitted.Add(chain.Id);
        Assert.Equal(a, resubmitted[0]);
        Assert.Equal(1, restarted.Resubmitted); // b's entry was dropped (its ring slot may still offer it again)
        Assert.False(restarted.IsBroken, restarted.BrokenReason);
    }
}
