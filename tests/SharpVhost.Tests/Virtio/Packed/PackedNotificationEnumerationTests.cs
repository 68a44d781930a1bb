using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// Bounded exhaustive check of descriptor-specific event suppression (EVENT_IDX on a packed ring) for
/// queue sizes 1 to 5: every event offset and wrap counter, every batch size, from every ring position
/// in both passes, against a reference written independently of <see cref="PackedRingLayout.NeedsEvent"/>:
/// "notify iff the event names one of the (position, wrap) pairs the other side wrote in this step".
/// </summary>
public sealed class PackedNotificationEnumerationTests
{
    public static TheoryData<int, MetadataAccess> Sizes()
    {
        var data = new TheoryData<int, MetadataAccess>();
        for (int n = 1; n <= 5; n++) { data.Add(n, MetadataAccess.Direct); data.Add(n, MetadataAccess.Checked); }
        return data;
    }

    /// <summary>Walks (index, wrap) from <paramref name="from"/> for <paramref name="steps"/> positions; true if it meets the event.</summary>
    private static bool Crossed(int eventIndex, bool eventWrap, int fromIndex, bool fromWrap, int steps, int n)
    {
        int index = fromIndex;
        bool wrap = fromWrap;
        for (int i = 0; i < steps; i++)
        {
            if (index == eventIndex && wrap == eventWrap) return true;
            if (++index == n) { index = 0; wrap = !wrap; }
        }
        return false;
    }

    private static ushort OffWrap(int index, bool wrap) => (ushort)(index | (wrap ? PackedRingLayout.WrapBit : 0));

    private static void WriteEvent(PackedRingFixture f, ulong area, ushort offWrap, ushort flags)
        => f.Shared.Memory.Write(area, offWrap | ((uint)flags << 16));

    [Theory, MemberData(nameof(Sizes))]
    public void Used_buffer_notifications_match_the_reference(int n, MetadataAccess access)
    {
        using var f = new PackedRingFixture(n, access, eventIndex: true);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        int usedIndex = 0;
        bool usedWrap = true;
        // Prime: one signalled step so that the device has a "last signalled" position.
        Step(1, OffWrap(0, true), expectFirst: true);
        for (int round = 0; round < 2 * n; round++)
            for (int batch = 1; batch <= n; batch++)
                for (int e = 0; e < 2 * n; e++)
                    Step(batch, OffWrap(e % n, e < n), expectFirst: false);

        void Step(int batch, ushort offWrap, bool expectFirst)
        {
            WriteEvent(f, f.Placement.DriverArea, offWrap, PackedRingLayout.EventDescriptor);
            for (int i = 0; i < batch; i++) Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(8), 8, true)], out _));
            f.Driver.Publish();
            for (int i = 0; i < batch; i++) { Assert.True(f.Device.TryPop(chain)); f.Device.AddUsed(chain, 0); }
            f.Device.FlushUsed();
            bool expected = expectFirst || Crossed(offWrap & 0x7fff, (offWrap & PackedRingLayout.WrapBit) != 0, usedIndex, usedWrap, batch, n);
            Assert.True(expected == f.Device.ShouldInterrupt(),
                $"size {n}: event {offWrap & 0x7fff}/{offWrap >> 15}, used from {usedIndex}/{(usedWrap ? 1 : 0)} by {batch}: expected {expected}");
            for (int i = 0; i < batch; i++) Assert.True(f.Driver.TryGetUsed(out _, out _));
            usedIndex += batch;
            if (usedIndex >= n) { usedIndex -= n; usedWrap = !usedWrap; }
        }
    }

    [Theory, MemberData(nameof(Sizes))]
    public void Available_buffer_notifications_match_the_reference(int n, MetadataAccess access)
    {
        using var f = new PackedRingFixture(n, access, eventIndex: true);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        int availIndex = 0;
        bool availWrap = true;
        for (int round = 0; round < 2 * n; round++)
            for (int batch = 1; batch <= n; batch++)
                for (int e = 0; e < 2 * n; e++)
                {
                    ushort offWrap = OffWrap(e % n, e < n);
                    WriteEvent(f, f.Placement.DeviceArea, offWrap, PackedRingLayout.EventDescriptor);
                    for (int i = 0; i < batch; i++) Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(8), 8, false)], out _));
                    f.Driver.Publish();
                    bool expected = Crossed(e % n, e < n, availIndex, availWrap, batch, n);
                    Assert.True(expected == f.Driver.NeedsKick(),
                        $"size {n}: event {e % n}/{(e < n ? 1 : 0)}, avail from {availIndex}/{(availWrap ? 1 : 0)} by {batch}: expected {expected}");
                    for (int i = 0; i < batch; i++) { Assert.True(f.Device.TryPop(chain)); f.Device.AddUsed(chain, 0); }
                    f.Device.FlushUsed();
                    for (int i = 0; i < batch; i++) Assert.True(f.Driver.TryGetUsed(out _, out _));
                    availIndex += batch;
                    if (availIndex >= n) { availIndex -= n; availWrap = !availWrap; }
                }
    }

    [Fact]
    public void Enable_and_disable_override_the_event_position()
    {
        using var f = new PackedRingFixture(4, MetadataAccess.Direct, eventIndex: true);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        foreach (var (flags, expected) in new[] { (PackedRingLayout.EventDisable, false), (PackedRingLayout.EventEnable, true), ((ushort)3, true) })
        {
            WriteEvent(f, f.Placement.DriverArea, OffWrap(3, false), flags); // a position this step does not reach
            WriteEvent(f, f.Placement.DeviceArea, OffWrap(3, false), flags);
            Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(8), 8, true)], out _));
            f.Driver.Publish();
            Assert.Equal(expected, f.Driver.NeedsKick());
            Assert.True(f.Device.TryPop(chain));
            f.Device.Push(chain, 0);
            f.Device.ShouldInterrupt(); // the first decision is unconditional: prime it
            Assert.True(f.Driver.TryGetUsed(out _, out _));
            Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(8), 8, true)], out _));
            f.Driver.Publish();
            f.Driver.NeedsKick();
            Assert.True(f.Device.TryPop(chain));
            f.Device.Push(chain, 0);
            Assert.Equal(expected, f.Device.ShouldInterrupt());
            Assert.True(f.Driver.TryGetUsed(out _, out _));
        }
    }
}
