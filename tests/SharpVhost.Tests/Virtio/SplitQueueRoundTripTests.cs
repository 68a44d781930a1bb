using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio;

public class SplitQueueRoundTripTests
{
    private const ulong MiB = 1 << 20;
    private static readonly ulong Data = TestGuest.Gpa(0x10000);

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void SimpleChainIsPoppedWithItsBytesAndReturned(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 8, access);
        var payload = Pattern(300, 1);
        payload.CopyTo(guest.Bytes(Data, 300));
        Assert.True(h.Driver.TryAdd([new DriverBuffer(Data, 300, false)], out ushort head));
        Assert.True(h.Attach());
        Assert.False(h.Device.TryPop(h.Chain)); // not yet published
        h.Driver.Publish();
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.Equal(head, h.Chain.Id);
        Assert.Equal(1, h.Chain.Count);
        Assert.Equal(1, h.Chain.ReadableCount);
        Assert.Equal(300u, h.Chain.ReadableBytes);
        Assert.Equal(0u, h.Chain.WritableBytes);
        Assert.Equal(payload, h.Chain.GetSpan(0).ToArray());
        Assert.False(h.Device.TryPop(h.Chain));
        Assert.False(h.Driver.TryGetUsed(out _, out _));
        h.Device.Push(h.Chain, 0);
        Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
        Assert.Equal(head, id);
        Assert.Equal(0u, len);
        Assert.False(h.Driver.TryGetUsed(out _, out _));
        Assert.Equal(8, h.Driver.FreeCount);
        Assert.False(h.Device.IsBroken);
        Assert.Equal(access == MetadataAccess.Direct, h.Device.UsingDirectAccess);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void NextChainMovesReadableBytesIntoWritableOnes(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 16, access);
        var payload = Pattern(1000, 2);
        payload.AsSpan(0, 600).CopyTo(guest.Bytes(Data, 600));
        payload.AsSpan(600).CopyTo(guest.Bytes(Data + 0x1000, 400));
        DriverBuffer[] buffers =
        [
            new(Data, 600, false), new(Data + 0x1000, 400, false),
            new(Data + 0x2000, 700, true), new(Data + 0x3000, 500, true),
        ];
        Assert.True(h.Driver.TryAdd(buffers, out ushort head));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.Equal(head, h.Chain.Id);
        Assert.Equal(4, h.Chain.DescriptorCount);
        Assert.Equal(2, h.Chain.ReadableCount);
        Assert.Equal(2, h.Chain.Writable.Length);
        Assert.Equal(1000u, h.Chain.ReadableBytes);
        Assert.Equal(1200u, h.Chain.WritableBytes);
        uint written = Echo.Serve(h.Chain);
        Assert.Equal(1000u, written);
        h.Device.Push(h.Chain, written);
        Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
        Assert.Equal(head, id);
        Assert.Equal(1000u, len);
        var got = guest.Bytes(Data + 0x2000, 700).ToArray().Concat(guest.Bytes(Data + 0x3000, 300).ToArray()).ToArray();
        Assert.Equal(payload.Select(Echo.Transform).ToArray(), got);
        Assert.Equal(16, h.Driver.FreeCount);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndirectTableIsFollowed(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 8, access);
        var payload = Pattern(64, 3);
        payload.CopyTo(guest.Bytes(Data, 64));
        DriverBuffer[] buffers = [new(Data, 32, false), new(Data + 32, 32, false), new(Data + 0x1000, 40, true), new(Data + 0x2000, 40, true), new(Data + 0x3000, 40, true)];
        ulong table = Data + 0x8000;
        Assert.True(h.Driver.TryAddIndirect(guest.DriverView, table, buffers, out ushort head)); // 5 entries, one ring slot
        Assert.Equal(7, h.Driver.FreeCount);
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.Equal(head, h.Chain.Id);
        Assert.Equal(1, h.Chain.DescriptorCount);
        Assert.Equal(5, h.Chain.Count);
        Assert.Equal(64u, h.Chain.ReadableBytes);
        Assert.Equal(120u, h.Chain.WritableBytes);
        uint written = Echo.Serve(h.Chain);
        h.Device.Push(h.Chain, written);
        Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
        Assert.Equal((head, 64u), (id, len));
        var got = guest.Bytes(Data + 0x1000, 40).ToArray().Concat(guest.Bytes(Data + 0x2000, 24).ToArray()).ToArray();
        Assert.Equal(payload.Select(Echo.Transform).ToArray(), got);
        Assert.Equal(8, h.Driver.FreeCount);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void ManyChainsComeBackOutOfOrderWithTheirLengths(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 8, access);
        var heads = new List<ushort>();
        for (int i = 0; i < 4; i++)
        {
            Assert.True(h.Driver.TryAdd([new(Data + (ulong)i * 0x100, 16, false), new(Data + 0x10000 + (ulong)i * 0x100, 16, true)], out ushort head));
            heads.Add(head);
        }
        Assert.False(h.Driver.TryAdd([new(Data, 1, false)], out _)); // 8 descriptors in use
        h.Driver.Publish();
        Assert.True(h.Attach());
        var popped = new List<ushort>();
        while (h.Device.TryPop(h.Chain)) popped.Add(h.Chain.Id);
        Assert.Equal(heads, popped);
        // Complete in reverse order, in one batch, with distinct lengths.
        for (int i = popped.Count - 1; i >= 0; i--) h.Device.AddUsed(popped[i], (uint)(100 + i));
        Assert.Equal(0, h.UsedIdxInRing);
        h.Device.FlushUsed();
        Assert.Equal(4, h.UsedIdxInRing);
        for (int i = popped.Count - 1; i >= 0; i--)
        {
            Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
            Assert.Equal((popped[i], (uint)(100 + i)), (id, len));
        }
        Assert.Equal(8, h.Driver.FreeCount);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndicesWrapAroundAt65536ForReal(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 4, access);
        h.RoundTrips(65534, Data);
        Assert.Equal(65534, h.UsedIdxInRing);
        Assert.Equal(65534, h.Device.LastAvailIndex);
        var payload = Pattern(40, 4);
        for (int round = 0; round < 5; round++) // three of the four go across the wrap
        {
            payload.CopyTo(guest.Bytes(Data, 40));
            Assert.True(h.Driver.TryAdd([new(Data, 40, false), new(Data + 0x1000, 40, true)], out ushort a));
            Assert.True(h.Driver.TryAdd([new(Data, 40, false), new(Data + 0x2000, 40, true)], out ushort b));
            h.Driver.Publish();
            Assert.True(h.Attach());
            Assert.True(h.Device.TryPop(h.Chain)); Assert.Equal(a, h.Chain.Id); h.Device.Push(h.Chain, Echo.Serve(h.Chain));
            Assert.True(h.Device.TryPop(h.Chain)); Assert.Equal(b, h.Chain.Id); h.Device.Push(h.Chain, Echo.Serve(h.Chain));
            Assert.False(h.Device.TryPop(h.Chain));
            Assert.True(h.Driver.TryGetUsed(out ushort ra, out uint la)); Assert.Equal((a, 40u), (ra, la));
            Assert.True(h.Driver.TryGetUsed(out ushort rb, out uint lb)); Assert.Equal((b, 40u), (rb, lb));
            Assert.Equal(payload.Select(Echo.Transform).ToArray(), guest.Bytes(Data + 0x1000, 40).ToArray());
            Assert.Equal(payload.Select(Echo.Transform).ToArray(), guest.Bytes(Data + 0x2000, 40).ToArray());
        }
        Assert.Equal(unchecked((ushort)(65534 + 10)), h.UsedIdxInRing);
        Assert.Equal(unchecked((ushort)(65534 + 10)), h.Device.LastAvailIndex);
        Assert.False(h.Device.IsBroken);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void SetBaseNearTheWrapResumesThere(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 8, access);
        h.ForceBase(65531);
        var heads = new Queue<ushort>();
        int completed = 0;
        for (int step = 0; step < 40; step++)
        {
            // Keep 5 in flight, complete 3 at a time: indices cross 65535 -> 0 several times within a batch.
            while (h.Driver.FreeCount > 0 && heads.Count < 5)
            {
                Assert.True(h.Driver.TryAdd([new(Data + (ulong)step, 1, false)], out ushort head));
                heads.Enqueue(head);
            }
            h.Driver.Publish();
            Assert.True(h.Attach());
            for (int i = 0; i < 3; i++)
            {
                Assert.True(h.Device.TryPop(h.Chain));
                h.Device.AddUsed(h.Chain, (uint)h.Chain.Id + 1000);
            }
            h.Device.FlushUsed();
            for (int i = 0; i < 3; i++)
            {
                Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
                Assert.Equal(heads.Dequeue(), id);
                Assert.Equal((uint)id + 1000, len);
                completed++;
            }
            // The device re-reads avail for the two it has not taken yet: put them back in its view.
            while (h.Device.TryPop(h.Chain)) { h.Device.AddUsed(h.Chain, (uint)h.Chain.Id + 1000); }
            h.Device.FlushUsed();
            while (h.Driver.TryGetUsed(out ushort id, out uint len)) { Assert.Equal(heads.Dequeue(), id); Assert.Equal((uint)id + 1000, len); completed++; }
        }
        Assert.Equal((ushort)(65531 + completed), h.UsedIdxInRing);
        Assert.False(h.Device.IsBroken);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void EventIdxSuppressesKicksAndInterruptsExactlyAsAsked(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 8, access, eventIndex: true);
        Assert.True(h.Attach());
        // Device asks to be kicked for the next buffer.
        Assert.False(h.Device.EnableKicks());
        Assert.Equal(0, h.AvailEventInRing);
        Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
        h.Driver.Publish();
        Assert.True(h.Driver.NeedsKick());
        Assert.False(h.Driver.NeedsKick()); // nothing new published
        // The device is busy (no EnableKicks): avail_event stays at 0, so more buffers need no kick.
        Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
        h.Driver.Publish();
        Assert.False(h.Driver.NeedsKick());
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.True(h.Device.EnableKicks() == false);
        Assert.Equal(2, h.AvailEventInRing);
        Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
        h.Driver.Publish();
        Assert.True(h.Driver.NeedsKick());

        // Interrupts: the driver asks for one once 2 more used elements arrive.
        h.Driver.DelayInterrupts(2); // used_event = 0 + 2 - 1 = 1
        h.Device.Push(h.Chain, 0);   // used idx 0 -> 1: first signal is always sent (signalled_used unknown)
        Assert.True(h.Device.ShouldInterrupt());
        Assert.False(h.Device.ShouldInterrupt()); // nothing new
        Assert.True(h.Driver.TryGetUsed(out _, out _));
        h.Driver.DelayInterrupts(2); // used_event = 1 + 1 = 2: interrupt when used idx passes 2, i.e. reaches 3
        Assert.True(h.Device.TryPop(h.Chain));
        h.Device.Push(h.Chain, 0);   // 1 -> 2
        Assert.False(h.Device.ShouldInterrupt());
        Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
        h.Driver.Publish();
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.True(h.Device.TryPop(h.Chain) == false);
        h.Device.Push(h.Chain, 0);   // 2 -> 3
        Assert.True(h.Device.ShouldInterrupt());
        Assert.Equal(2, h.Device.Counters.Interrupts);
        Assert.False(h.Device.IsBroken);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void FlagsSuppressKicksAndInterrupts(MetadataAccess access)
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 8, access);
        Assert.True(h.Attach());
        Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
        h.Driver.Publish();
        Assert.True(h.Driver.NeedsKick()); // used.flags == 0
        h.Device.DisableKicks();
        Assert.Equal(SplitRingLayout.UsedNoNotify, h.UsedFlagsInRing);
        Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
        h.Driver.Publish();
        Assert.False(h.Driver.NeedsKick());
        Assert.True(h.Device.EnableKicks()); // two buffers are pending: keep going
        Assert.Equal(0, h.UsedFlagsInRing);
        Assert.True(h.Device.TryPop(h.Chain));
        h.Device.Push(h.Chain, 0);
        Assert.True(h.Device.ShouldInterrupt()); // avail.flags == 0
        h.Driver.DisableInterrupts();
        Assert.Equal(SplitRingLayout.AvailNoInterrupt, h.AvailFlagsInRing);
        Assert.True(h.Device.TryPop(h.Chain));
        h.Device.Push(h.Chain, 0);
        Assert.False(h.Device.ShouldInterrupt());
        Assert.True(h.Driver.EnableInterrupts()); // used elements are pending: reap
        Assert.False(h.Device.EnableKicks());     // ring is empty
        Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
        h.Driver.Publish();
        Assert.True(h.Driver.NeedsKick());
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void NotifyOnEmptyOverridesSuppressionWhenTheRingRunsDry(MetadataAccess access)
    {
        foreach (bool eventIdx in new[] { false, true })
        {
            using var guest = new TestGuest(MiB);
            var h = new QueueHarness(guest, 8, access, eventIndex: eventIdx, notifyOnEmpty: true);
            Assert.True(h.Attach());
            h.Driver.DisableInterrupts();
            if (eventIdx) h.Driver.DelayInterrupts(100); // far away
            Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
            Assert.True(h.Driver.TryAdd([new(Data, 1, false)], out _));
            h.Driver.Publish();
            Assert.True(h.Device.TryPop(h.Chain));
            h.Device.Push(h.Chain, 0);
            if (eventIdx) Assert.True(h.Device.ShouldInterrupt()); // the first event-idx signal is unconditional
            else Assert.False(h.Device.ShouldInterrupt()); // one more is available: suppression holds
            Assert.True(h.Device.TryPop(h.Chain));
            h.Device.Push(h.Chain, 0);
            Assert.True(h.Device.ShouldInterrupt()); // ring empty: notify anyway
        }
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void BufferCrossingIntoAnAdjacentRegionIsSplitIntoSegments(MetadataAccess access)
    {
        // Two device regions adjacent in guest-physical space but separate mappings.
        using var guest = new TestGuest(MiB, new RegionSpec(0, MiB / 2), new RegionSpec(MiB / 2, MiB / 2));
        Assert.Equal(2, guest.Domain.Current.Regions.Count);
        var h = new QueueHarness(guest, 8, access);
        ulong boundary = TestGuest.Gpa(MiB / 2);
        var payload = Pattern(0x300, 5);
        payload.CopyTo(guest.Bytes(boundary - 0x100, 0x300));
        Assert.True(h.Driver.TryAdd([new(boundary - 0x100, 0x300, false), new(boundary - 0x80, 0x300, true)], out ushort head));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.True(h.Device.TryPop(h.Chain));
        Assert.Equal(4, h.Chain.Count);
        Assert.Equal(2, h.Chain.ReadableCount);
        Assert.Equal(new uint[] { 0x100, 0x200, 0x80, 0x280 }, h.Chain.Segments.ToArray().Select(s => s.Length).ToArray());
        Assert.Equal(boundary, h.Chain.Segments[1].GuestAddress);
        Assert.Equal(boundary, h.Chain.Segments[3].GuestAddress);
        // The two halves are really in different mappings.
        Assert.Equal(guest.Domain.Current.FindByGuest(boundary)!.HostAddress, h.Chain.Segments[1].Host);
        var copy = new byte[0x300];
        h.Chain.CopyFromReadable(0, copy);
        Assert.Equal(payload, copy);
        h.Device.Push(h.Chain, Echo.Serve(h.Chain));
        Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
        Assert.Equal((head, 0x300u), (id, len));
        Assert.Equal(payload.Select(Echo.Transform).ToArray(), guest.Bytes(boundary - 0x80, 0x300).ToArray());
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void RingsStraddlingTwoRegionsFallBackToCheckedAndBehaveTheSame(MetadataAccess access)
    {
        // Region boundary at 0x1000; the descriptor table of a 256-queue at 0x800 spans [0x800, 0x1800).
        using var split = new TestGuest(MiB, new RegionSpec(0, 0x1000), new RegionSpec(0x1000, MiB - 0x1000));
        using var whole = new TestGuest(MiB);
        var results = new List<List<(ushort, uint, byte[])>>();
        foreach (var guest in new[] { split, whole })
        {
            var h = new QueueHarness(guest, 256, access, ringOffset: 0x800);
            var log = new List<(ushort, uint, byte[])>();
            for (int round = 0; round < 300; round++) // wraps the 256-entry ring
            {
                int n = 1 + round % 3;
                Pattern(n * 8, round).CopyTo(guest.Bytes(Data, n * 8));
                Assert.True(h.Driver.TryAdd([new(Data, (uint)n * 8, false), new(Data + 0x1000, 64, true)], out _));
                h.Driver.Publish();
                Assert.True(h.Attach());
                Assert.True(h.Device.TryPop(h.Chain));
                h.Device.Push(h.Chain, Echo.Serve(h.Chain));
                Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
                log.Add((id, len, guest.Bytes(Data + 0x1000, 64).ToArray()));
            }
            Assert.False(h.Device.IsBroken);
            if (guest == split)
            {
                Assert.False(h.Device.UsingDirectAccess);
                Assert.Equal(access == MetadataAccess.Direct ? 1 : 0, h.Device.Counters.DirectFallbacks);
                Assert.Equal(0, h.Device.Counters.DirectBinds);
            }
            else Assert.Equal(access == MetadataAccess.Direct, h.Device.UsingDirectAccess);
            results.Add(log);
        }
        Assert.Equal(results[0].Count, results[1].Count);
        for (int i = 0; i < results[0].Count; i++)
        {
            Assert.Equal(results[0][i].Item1, results[1][i].Item1);
            Assert.Equal(results[0][i].Item2, results[1][i].Item2);
            Assert.Equal(results[0][i].Item3, results[1][i].Item3);
        }
    }
}
