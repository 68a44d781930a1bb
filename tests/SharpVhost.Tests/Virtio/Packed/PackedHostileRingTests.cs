using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// A driver that breaks the packed ring's rules: each case must mark the queue broken with a reason
/// (never crash, never touch memory outside the guest) and leave other queues alone.
/// </summary>
public sealed class PackedHostileRingTests
{
    private const ushort Write = VirtqDescriptor.FlagWrite;
    private const ushort Next = VirtqDescriptor.FlagNext;
    private const ushort Indirect = VirtqDescriptor.FlagIndirect;
    private static readonly ushort Avail1 = PackedRingLayout.AvailableFlags(true);

    public static TheoryData<MetadataAccess> Accessors() => new() { MetadataAccess.Direct, MetadataAccess.Checked };

    private static void AssertBroken(PackedRingFixture f, string reasonFragment)
    {
        var chain = new DescriptorChain();
        Assert.True(f.Attach());
        Assert.False(f.Device.TryPop(chain));
        Assert.True(f.Device.IsBroken);
        Assert.Contains(reasonFragment, f.Device.BrokenReason);
        Assert.False(f.Device.TryPop(chain)); // stays broken
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Buffer_id_out_of_range(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 4, (ushort)(Avail1 | Write)));
        AssertBroken(f, "out of range");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Buffer_id_reused_while_in_flight(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 1, (ushort)(Avail1 | Write)));
        f.WriteDescriptor(1, new PackedDescriptor(f.AllocateBuffer(8), 8, 1, (ushort)(Avail1 | Write)));
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        Assert.True(f.Device.TryPop(chain));
        AssertBroken(f, "already in flight");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Chain_running_round_the_ring_onto_its_own_head(MetadataAccess access)
    {
        // Every descriptor says NEXT: after slot 3 the chain would continue at slot 0 again.
        using var f = new PackedRingFixture(4, access);
        for (int slot = 0; slot < 4; slot++) f.WriteDescriptor(slot, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(Avail1 | Next)));
        AssertBroken(f, "longer than");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Chain_running_into_descriptors_still_in_flight(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        var chain = new DescriptorChain();
        Assert.True(f.Attach());
        // Three single-descriptor buffers popped and not completed...
        for (int slot = 0; slot < 3; slot++) f.WriteDescriptor(slot, new PackedDescriptor(f.AllocateBuffer(8), 8, (ushort)slot, (ushort)(Avail1 | Write)));
        for (int i = 0; i < 3; i++) Assert.True(f.Device.TryPop(chain));
        // ...then a chain from slot 3 that wraps into slot 0, which the device has not returned.
        f.WriteDescriptor(3, new PackedDescriptor(f.AllocateBuffer(8), 8, 3, (ushort)(Avail1 | Next)));
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 3, (ushort)(PackedRingLayout.AvailableFlags(false) | Write)));
        AssertBroken(f, "longer than the free part");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Chain_continuing_into_a_descriptor_of_the_wrong_pass(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(Avail1 | Next)));
        f.WriteDescriptor(1, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(PackedRingLayout.AvailableFlags(false) | Write)));
        AssertBroken(f, "not available");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Used_flags_of_the_current_pass_at_the_next_available_slot(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(PackedRingLayout.UsedFlags(true) | Write)));
        AssertBroken(f, "wrap counter confusion");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void A_descriptor_of_the_other_pass_is_simply_not_available(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(PackedRingLayout.AvailableFlags(false) | Write)));
        Assert.True(f.Attach());
        Assert.False(f.Device.TryPop(new DescriptorChain()));
        Assert.False(f.Device.IsBroken);
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Readable_descriptor_after_a_writable_one(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(Avail1 | Write | Next)));
        f.WriteDescriptor(1, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, Avail1));
        AssertBroken(f, "after a device-writable");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Indirect_with_next(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        ulong table = f.AllocateBuffer(32);
        f.WriteDescriptor(0, new PackedDescriptor(table, 32, 0, (ushort)(Avail1 | Indirect | Next)));
        f.WriteDescriptor(1, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(Avail1 | Write)));
        AssertBroken(f, "not alone");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Indirect_inside_a_chain(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(8), 8, 0, (ushort)(Avail1 | Next)));
        f.WriteDescriptor(1, new PackedDescriptor(f.AllocateBuffer(32), 32, 0, (ushort)(Avail1 | Indirect)));
        AssertBroken(f, "not alone");
    }

    [Theory]
    [InlineData(MetadataAccess.Direct, 0u)]
    [InlineData(MetadataAccess.Checked, 0u)]
    [InlineData(MetadataAccess.Direct, 24u)]
    [InlineData(MetadataAccess.Checked, 24u)]
    public void Indirect_table_length_not_a_multiple_of_16(MetadataAccess access, uint length)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(32), length, 0, (ushort)(Avail1 | Indirect)));
        AssertBroken(f, "multiple of 16");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Indirect_table_larger_than_the_queue(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        f.WriteDescriptor(0, new PackedDescriptor(f.AllocateBuffer(16 * 5), 16 * 5, 0, (ushort)(Avail1 | Indirect)));
        AssertBroken(f, "more than the queue size");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Indirect_table_outside_guest_memory(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(PackedRingFixture.MemorySize - 16, 32, 0, (ushort)(Avail1 | Indirect)));
        AssertBroken(f, "not guest memory");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Buffer_outside_guest_memory(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(PackedRingFixture.MemorySize + 4096, 8, 0, (ushort)(Avail1 | Write)));
        AssertBroken(f, "not writable guest memory");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Buffer_address_plus_length_overflows(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.WriteDescriptor(0, new PackedDescriptor(ulong.MaxValue - 4, 8, 0, Avail1));
        AssertBroken(f, "overflows");
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Ring_outside_guest_memory_fails_the_attach(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        var rings = f.Rings();
        f.Device.SetRings(rings with { Descriptors = rings.Descriptors + PackedRingFixture.MemorySize });
        Assert.False(f.Attach());
        Assert.True(f.Device.IsBroken);
        f.Device.Reset();
        f.Device.SetRings(rings with { Used = rings.Used + PackedRingFixture.MemorySize });
        Assert.False(f.Attach());
        Assert.Contains("device area", f.Device.BrokenReason);
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Vring_base_outside_the_ring_fails_the_attach(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access);
        f.Device.SetBase(0x8000 | 9);
        Assert.False(f.Attach());
        Assert.Contains("vring base", f.Device.BrokenReason);
    }

    [Theory, MemberData(nameof(Accessors))]
    public void A_broken_queue_leaves_its_neighbour_working_and_recovers_on_reset(MetadataAccess access)
    {
        using var bad = new PackedRingFixture(8, access);
        using var good = new PackedRingFixture(8, access);
        bad.WriteDescriptor(0, new PackedDescriptor(bad.AllocateBuffer(8), 8, 200, (ushort)(Avail1 | Write)));
        AssertBroken(bad, "out of range");

        var chain = new DescriptorChain();
        Assert.True(good.Attach());
        Assert.True(good.Driver.TryAdd([new DriverBuffer(good.AllocateBuffer(8), 8, true)], out _));
        good.Driver.Publish();
        Assert.True(good.Device.TryPop(chain));
        good.Device.Push(chain, 8);
        Assert.True(good.Driver.TryGetUsed(out _, out _));

        bad.Device.Reset();
        bad.WriteDescriptor(0, new PackedDescriptor(bad.AllocateBuffer(8), 8, 2, (ushort)(Avail1 | Write)));
        Assert.True(bad.Attach());
        Assert.True(bad.Device.TryPop(chain), bad.Device.BrokenReason);
        Assert.Equal(2, chain.Id);
    }

    [Fact]
    public void Driver_rejects_a_device_returning_an_id_not_in_flight()
    {
        using var f = new PackedRingFixture(8, MetadataAccess.Direct);
        Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(8), 8, true)], out ushort id));
        f.Driver.Publish();
        f.WriteDescriptor(0, new PackedDescriptor(0, 8, (ushort)(id + 1), PackedRingLayout.UsedFlags(true)));
        Assert.Throws<VirtqueueException>(() => f.Driver.TryGetUsed(out _, out _));
    }
}
