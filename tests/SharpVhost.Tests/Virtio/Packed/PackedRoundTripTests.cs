using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>Our packed driver against our packed device: chains, indirect tables, completion order, wrap-around.</summary>
public sealed class PackedRoundTripTests
{
    public static TheoryData<int, MetadataAccess> SizesAndAccessors()
    {
        var data = new TheoryData<int, MetadataAccess>();
        foreach (int size in new[] { 1, 2, 3, 5, 8, 13, 100, 256 })
            foreach (var access in new[] { MetadataAccess.Direct, MetadataAccess.Checked })
                data.Add(size, access);
        return data;
    }

    [Theory]
    [MemberData(nameof(SizesAndAccessors))]
    public void Chains_round_trip_in_order_across_several_wraps(int size, MetadataAccess access)
    {
        using var f = new PackedRingFixture(size, access);
        Assert.True(f.Attach());
        Assert.Equal(access == MetadataAccess.Direct, f.Device.UsingDirectAccess);
        var chain = new DescriptorChain();
        var random = new Random(size);
        int requests = 5 * size + 7; // at least four wraps of both wrap counters
        Span<DriverBuffer> buffers = stackalloc DriverBuffer[6];
        for (int r = 0; r < requests; r++)
        {
            int readable = random.Next(0, Math.Min(3, size));
            int writable = random.Next(readable == 0 ? 1 : 0, Math.Min(3, size - readable) + 1);
            int n = readable + writable;
            for (int i = 0; i < n; i++)
            {
                uint length = (uint)random.Next(1, 300);
                ulong gpa = f.AllocateBuffer(length);
                buffers[i] = new DriverBuffer(gpa, length, i >= readable);
                if (i < readable) f.Span(gpa, (int)length).Fill((byte)(r + i));
            }
            Assert.True(f.Driver.TryAdd(buffers[..n], out ushort id));
            f.Driver.Publish();

            Assert.True(f.Device.TryPop(chain), f.Device.BrokenReason);
            Assert.Equal(id, chain.Id);
            Assert.Equal(n, chain.DescriptorCount);
            Assert.Equal(n, chain.Count);
            Assert.Equal(readable, chain.ReadableCount);
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(buffers[i].GuestAddress, chain.Segments[i].GuestAddress);
                Assert.Equal(buffers[i].Length, chain.Segments[i].Length);
                Assert.Equal(buffers[i].DeviceWritable, chain.Segments[i].DeviceWritable);
                if (i < readable) Assert.True(chain.GetSpan(i).IndexOfAnyExcept((byte)(r + i)) < 0);
            }
            Assert.False(f.Device.TryPop(chain)); // nothing more
            byte[] payload = Enumerable.Range(0, (int)chain.WritableBytes).Select(x => (byte)(x ^ r)).ToArray();
            Assert.Equal(payload.Length, chain.CopyToWritable(0, payload));
            f.Device.Push(chain, chain.WritableBytes);

            Assert.True(f.Driver.TryGetUsed(out ushort usedId, out uint usedLength));
            Assert.Equal(id, usedId);
            Assert.Equal(chain.WritableBytes, usedLength);
            int offset = 0;
            for (int i = readable; i < n; i++)
            {
                Assert.True(f.Span(buffers[i].GuestAddress, (int)buffers[i].Length).SequenceEqual(payload.AsSpan(offset, (int)buffers[i].Length)));
                offset += (int)buffers[i].Length;
            }
            Assert.False(f.Driver.TryGetUsed(out _, out _));
            Assert.Equal(size, f.Driver.FreeCount);
        }
        Assert.False(f.Device.IsBroken);
        Assert.Equal(requests, f.Device.Counters.Requests);
    }

    [Theory]
    [MemberData(nameof(SizesAndAccessors))]
    public void Out_of_order_completion_returns_every_id_with_its_length(int size, MetadataAccess access)
    {
        using var f = new PackedRingFixture(size, access);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        var random = new Random(size * 7);
        var popped = new List<(ushort Id, uint Written)>();
        var expected = new Dictionary<ushort, uint>();
        Span<DriverBuffer> two = stackalloc DriverBuffer[2];
        for (int round = 0; round < 6; round++)
        {
            // Fill the ring with one- and two-descriptor chains.
            while (true)
            {
                int n = Math.Min(random.Next(1, 3), f.Driver.FreeCount);
                if (n == 0) break;
                for (int i = 0; i < n; i++) two[i] = new DriverBuffer(f.AllocateBuffer(64), 64, i == n - 1);
                Assert.True(f.Driver.TryAdd(two[..n], out _));
            }
            f.Driver.Publish();
            while (f.Device.TryPop(chain)) popped.Add((chain.Id, (uint)random.Next(0, 65)));
            Assert.False(f.Device.IsBroken, f.Device.BrokenReason);
            // Complete in a shuffled order, in two batches.
            var order = popped.OrderBy(_ => random.Next()).ToList();
            popped.Clear();
            for (int i = 0; i < order.Count; i++)
            {
                f.Device.AddUsed(order[i].Id, order[i].Written);
                expected[order[i].Id] = order[i].Written;
                if (i == order.Count / 2) f.Device.FlushUsed();
            }
            f.Device.FlushUsed();
            while (f.Driver.TryGetUsed(out ushort id, out uint length))
            {
                Assert.True(expected.Remove(id, out uint want), $"id {id} returned twice or never offered");
                Assert.Equal(want, length);
            }
            Assert.Empty(expected);
            Assert.Equal(size, f.Driver.FreeCount);
            Assert.Equal(0, f.Driver.InFlight);
        }
        Assert.False(f.Device.IsBroken, f.Device.BrokenReason);
    }

    [Theory]
    [InlineData(MetadataAccess.Direct)]
    [InlineData(MetadataAccess.Checked)]
    public void Indirect_tables_carry_a_whole_request_in_one_ring_descriptor(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access); // a table holds at most a queue's worth of entries
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        for (int r = 0; r < 10; r++)
        {
            var buffers = new[]
            {
                new DriverBuffer(f.AllocateBuffer(16), 16, false),
                new DriverBuffer(f.AllocateBuffer(4096), 4096, false),
                new DriverBuffer(f.AllocateBuffer(512), 512, true),
                new DriverBuffer(f.AllocateBuffer(1), 1, true),
            };
            ulong table = f.AllocateBuffer(16 * 4);
            Assert.True(f.Driver.TryAddIndirect(f.Shared.Memory, table, buffers, out ushort id));
            f.Driver.Publish();
            Assert.True(f.Device.TryPop(chain), f.Device.BrokenReason);
            Assert.Equal(id, chain.Id);
            Assert.Equal(1, chain.DescriptorCount);
            Assert.Equal(4, chain.Count);
            Assert.Equal(2, chain.ReadableCount);
            Assert.Equal(4112u, chain.ReadableBytes);
            Assert.Equal(513u, chain.WritableBytes);
            f.Device.Push(chain, 513);
            Assert.True(f.Driver.TryGetUsed(out ushort usedId, out uint length));
            Assert.Equal((id, 513u), (usedId, length));
        }
    }

    [Theory]
    [InlineData(MetadataAccess.Direct)]
    [InlineData(MetadataAccess.Checked)]
    public void A_batch_becomes_visible_to_the_driver_only_when_flushed(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        var ids = new List<ushort>();
        for (int i = 0; i < 4; i++)
        {
            Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(8), 8, true)], out _));
        }
        // Not published: the device sees nothing yet.
        Assert.False(f.Device.TryPop(chain));
        f.Driver.Publish();
        while (f.Device.TryPop(chain)) ids.Add(chain.Id);
        Assert.Equal(4, ids.Count);
        foreach (var id in ids) f.Device.AddUsed(id, 8);
        Assert.False(f.Driver.TryGetUsed(out _, out _)); // the batch's first flags are written last
        f.Device.FlushUsed();
        for (int i = 0; i < 4; i++) Assert.True(f.Driver.TryGetUsed(out _, out _));
    }

    [Theory]
    [InlineData(MetadataAccess.Direct, 5)]
    [InlineData(MetadataAccess.Checked, 5)]
    [InlineData(MetadataAccess.Direct, 64)]
    public void Vring_base_round_trips_and_resumes_mid_ring(MetadataAccess access, int size)
    {
        using var f = new PackedRingFixture(size, access);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        // Move both positions past a wrap, then stop.
        for (int i = 0; i < size + 2; i++)
        {
            Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(4), 4, true)], out _));
            f.Driver.Publish();
            Assert.True(f.Device.TryPop(chain));
            f.Device.Push(chain, 4);
            Assert.True(f.Driver.TryGetUsed(out _, out _));
        }
        uint vringBase = f.Device.GetBase();
        Assert.Equal(2u, vringBase & 0x7fff);
        Assert.Equal(0u, (vringBase >> 15) & 1); // wrapped once: the counter is now 0
        Assert.Equal(vringBase & 0xffff, vringBase >> 16); // nothing in flight: used = avail

        for (int form = 0; form < 2; form++)
        {
            uint restored = form == 0 ? vringBase : vringBase & 0xffff; // QEMU's form, then DPDK's (low half only)
            var resumed = new PackedQueue(0, access);
            resumed.SetSize(size);
            resumed.SetBase(restored);
            resumed.SetRings(f.Rings());
            Assert.True(resumed.Attach(f.Memory));
            Assert.Equal(vringBase, resumed.GetBase());
            Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(4), 4, true)], out ushort id));
            f.Driver.Publish();
            Assert.True(resumed.TryPop(chain), resumed.BrokenReason);
            Assert.Equal(id, chain.Id);
            resumed.Push(chain, 4);
            Assert.True(f.Driver.TryGetUsed(out ushort usedId, out _));
            Assert.Equal(id, usedId);
            vringBase = resumed.GetBase();
        }
    }

    [Fact]
    public void A_ring_straddling_two_regions_falls_back_to_the_checked_accessor()
    {
        // Two memfd regions, adjacent in both address spaces; the ring starts 32 bytes before the seam.
        using var a = new SharpVhost.VhostUser.Frontend.SharedMemory(4096);
        using var b = new SharpVhost.VhostUser.Frontend.SharedMemory(4096);
        var ra = SharpVhost.Memory.MemoryRegion.Map(a.Fd, new SharpVhost.Memory.RegionDescription(0x10000, 4096, 0x7000_0000, 0));
        var rb = SharpVhost.Memory.MemoryRegion.Map(b.Fd, new SharpVhost.Memory.RegionDescription(0x11000, 4096, 0x7000_1000, 0));
        try
        {
            var memory = SharpVhost.Memory.GuestMemory.Create([ra, rb], null, 1);
            var placement = PackedRingPlacement.At(0x10000 + 4096 - 32, 4);
            var queue = new PackedQueue(0, MetadataAccess.Direct);
            queue.SetSize(4);
            queue.SetRings(new RingAddresses(placement.Descriptors - 0x10000 + 0x7000_0000, placement.DriverArea - 0x10000 + 0x7000_0000, placement.DeviceArea - 0x10000 + 0x7000_0000));
            Assert.True(queue.Attach(memory), queue.BrokenReason);
            Assert.False(queue.UsingDirectAccess);
            Assert.Equal(1, queue.Counters.DirectFallbacks);
            // Descriptors 0-1 in region a, 2-3 in region b; drive them by hand (the driver wants one region).
            var chain = new DescriptorChain();
            for (int slot = 0; slot < 4; slot++)
            {
                memory.Write(placement.Descriptors + (ulong)slot * 16, new PackedDescriptor(0x11800, 8, (ushort)slot, (ushort)(PackedRingLayout.AvailableFlags(true) | VirtqDescriptor.FlagWrite)));
                Assert.True(queue.TryPop(chain), queue.BrokenReason);
                Assert.Equal(slot, chain.Id);
                queue.Push(chain, 8);
                var used = memory.Read<PackedDescriptor>(placement.Descriptors + (ulong)slot * 16);
                Assert.True(PackedRingLayout.IsUsed(used.Flags, true));
                Assert.Equal((ushort)slot, used.Id);
            }
        }
        finally
        {
            ra.Dispose();
            rb.Dispose();
        }
    }
}
