using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>The two event suppression structures: enable, disable, and (EVENT_IDX) a specific descriptor position.</summary>
public sealed class PackedEventSuppressionTests
{
    public static TheoryData<MetadataAccess> Accessors() => new() { MetadataAccess.Direct, MetadataAccess.Checked };

    private static ushort Offer(PackedRingFixture f)
    {
        Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(8), 8, true)], out ushort id));
        f.Driver.Publish();
        return id;
    }

    private static void PopAndComplete(PackedRingFixture f)
    {
        var chain = new DescriptorChain();
        Assert.True(f.Device.TryPop(chain), f.Device.BrokenReason);
        f.Device.Push(chain, 8);
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Interrupts_follow_enable_and_disable(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        Assert.True(f.Attach());
        Assert.False(f.Device.ShouldInterrupt()); // nothing flushed yet
        Offer(f);
        PopAndComplete(f);
        Assert.True(f.Device.ShouldInterrupt()); // the ring starts with events enabled
        Assert.False(f.Device.ShouldInterrupt()); // once per flush

        f.Driver.DisableInterrupts();
        Offer(f);
        PopAndComplete(f);
        Assert.False(f.Device.ShouldInterrupt());

        Assert.True(f.Driver.EnableInterrupts()); // a used buffer is already waiting: reap instead of sleeping
        Offer(f);
        PopAndComplete(f);
        Assert.True(f.Device.ShouldInterrupt());
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Event_index_interrupts_only_when_the_named_position_is_used(MetadataAccess access)
    {
        using var f = new PackedRingFixture(3, access, eventIndex: true);
        Assert.True(f.Attach());
        for (int round = 0; round < 5; round++) // several wraps of the used wrap counter
        {
            Assert.False(f.Driver.EnableInterrupts()); // event at the next used position
            Offer(f);
            PopAndComplete(f);
            Assert.True(f.Device.ShouldInterrupt());
            // The driver has not reaped nor re-armed: the next completion passes no event position.
            Offer(f);
            PopAndComplete(f);
            Assert.False(f.Device.ShouldInterrupt());
            Assert.True(f.Driver.TryGetUsed(out _, out _));
            Assert.True(f.Driver.TryGetUsed(out _, out _));
        }
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Kicks_follow_the_device_event_structure(MetadataAccess access)
    {
        using var f = new PackedRingFixture(4, access);
        Assert.True(f.Attach());
        Offer(f);
        Assert.True(f.Driver.NeedsKick()); // enabled at start
        Assert.False(f.Driver.NeedsKick()); // nothing new published

        f.Device.DisableKicks();
        Offer(f);
        Assert.False(f.Driver.NeedsKick());

        Assert.True(f.Device.EnableKicks()); // two buffers are waiting: keep processing
        PopAndComplete(f);
        PopAndComplete(f);
        Assert.False(f.Device.EnableKicks());
        Offer(f);
        Assert.True(f.Driver.NeedsKick());
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Event_index_kicks_only_when_the_named_position_is_made_available(MetadataAccess access)
    {
        using var f = new PackedRingFixture(5, access, eventIndex: true);
        Assert.True(f.Attach());
        for (int round = 0; round < 6; round++)
        {
            Assert.False(f.Device.EnableKicks()); // event at the next available position
            Offer(f);
            Assert.True(f.Driver.NeedsKick());
            f.Device.DisableKicks(); // EVENT_IDX: the event position is just left behind
            Offer(f);
            Assert.False(f.Driver.NeedsKick());
            PopAndComplete(f);
            PopAndComplete(f);
            Assert.True(f.Driver.TryGetUsed(out _, out _));
            Assert.True(f.Driver.TryGetUsed(out _, out _));
        }
    }

    [Fact]
    public void Needs_event_counts_positions_modulo_twice_the_ring()
    {
        const int n = 6;
        int At(int index, bool wrap) => PackedRingLayout.Extended(index, wrap, n);
        ushort Off(int index, bool wrap) => (ushort)(index | (wrap ? PackedRingLayout.WrapBit : 0));
        // Written positions [4, 2) of the next pass: 4, 5, 0', 1'.
        Assert.True(PackedRingLayout.NeedsEvent(Off(4, true), At(2, false), At(4, true), n));
        Assert.True(PackedRingLayout.NeedsEvent(Off(1, false), At(2, false), At(4, true), n));
        Assert.False(PackedRingLayout.NeedsEvent(Off(2, false), At(2, false), At(4, true), n));
        Assert.False(PackedRingLayout.NeedsEvent(Off(1, true), At(2, false), At(4, true), n)); // right index, wrong pass
        Assert.False(PackedRingLayout.NeedsEvent(Off(3, true), At(2, false), At(4, true), n));
        // From the second pass back into the first: [5', 1) = 5', 0.
        Assert.True(PackedRingLayout.NeedsEvent(Off(0, true), At(1, true), At(5, false), n));
        Assert.False(PackedRingLayout.NeedsEvent(Off(0, false), At(1, true), At(5, false), n));
    }
}
