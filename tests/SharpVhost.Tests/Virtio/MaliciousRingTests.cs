using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;
using D = SharpVhost.Virtio.VirtqDescriptor;

namespace SharpVhost.Tests.Virtio;

/// <summary>
/// A hostile driver writes the rings directly. Each case: TryPop fails, only that queue is broken with a
/// clear reason, nothing outside guest memory is touched (a stray access would fault and kill the
/// test host), and a second queue on the same memory keeps working.
/// </summary>
public class MaliciousRingTests
{
    private const ulong MiB = 1 << 20;
    private const int Size = 4;
    private static readonly ulong Data = TestGuest.Gpa(0x10000);
    private static readonly ulong Table = TestGuest.Gpa(0x20000);
    private const ulong GoodRing = 0x8000;
    private static readonly ulong GoodData = TestGuest.Gpa(0x40000);

    private static void WriteTable(TestGuest guest, params D[] entries)
    {
        for (int i = 0; i < entries.Length; i++)
            System.Runtime.CompilerServices.Unsafe.WriteUnaligned(ref guest.Bytes(Table + (ulong)i * 16, 16)[0], entries[i]);
    }

    /// <summary>Publishes a head at avail slot 0 (avail idx 1) after <paramref name="arrange"/> wrote the descriptors.</summary>
    private static void Check(MetadataAccess access, string reason, Action<QueueHarness> arrange, TestGuest? guestOverride = null, bool publishHead0 = true)
    {
        using var owned = guestOverride is null ? new TestGuest(MiB) : null;
        var guest = guestOverride ?? owned!;
        var bad = new QueueHarness(guest, Size, access, index: 0);
        var good = new QueueHarness(guest, Size, access, ringOffset: GoodRing, index: 1);
        arrange(bad);
        if (publishHead0)
        {
            bad.WriteAvailEntry(0, 0);
            bad.WriteAvailIdx(1);
        }
        var mem = guest.Domain.Current;
        if (bad.Device.Attach(mem))
        {
            Assert.False(bad.Device.TryPop(bad.Chain));
        }
        Assert.True(bad.Device.IsBroken);
        Assert.Contains(reason, bad.Device.BrokenReason!, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(1, bad.Device.Counters.Errors);
        // Broken stays broken and inert until reset.
        Assert.False(bad.Device.Attach(mem));
        Assert.False(bad.Device.TryPop(bad.Chain));
        bad.Device.AddUsed(0, 0);
        bad.Device.FlushUsed();
        Assert.Equal(0, bad.UsedIdxInRing);
        Assert.False(bad.Device.ShouldInterrupt());

        // The other queue on the same memory is unaffected.
        Assert.True(good.Device.Attach(mem));
        for (int i = 0; i < 6; i++)
        {
            Assert.True(good.Driver.TryAdd([new(GoodData, 8, false), new(GoodData + 0x100, 8, true)], out ushort head));
            good.Driver.Publish();
            Assert.True(good.Device.TryPop(good.Chain));
            good.Device.Push(good.Chain, Echo.Serve(good.Chain));
            Assert.True(good.Driver.TryGetUsed(out ushort id, out uint len));
            Assert.Equal((head, 8u), (id, len));
        }
        Assert.False(good.Device.IsBroken);

        // A reset clears the error (the driver re-initialises the ring).
        bad.Device.Reset();
        Assert.False(bad.Device.IsBroken);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AvailIndexMoreThanQueueSizeAhead(MetadataAccess a)
        => Check(a, "more than the queue size ahead", h => { h.WriteDescriptor(0, new D(Data, 1, 0, 0)); h.WriteAvailIdx(Size + 1); }, publishHead0: false);

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AvailIndexFarBehind(MetadataAccess a)
        => Check(a, "more than the queue size ahead", h => h.WriteAvailIdx(65535), publishHead0: false);

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void HeadOutOfRange(MetadataAccess a)
        => Check(a, "avail entry names descriptor 4", h => { h.WriteAvailEntry(0, Size); h.WriteAvailIdx(1); }, publishHead0: false);

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void HeadFarOutOfRange(MetadataAccess a)
        => Check(a, "avail entry names descriptor 65535", h => { h.WriteAvailEntry(0, 65535); h.WriteAvailIdx(1); }, publishHead0: false);

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void NextOutOfRange(MetadataAccess a)
        => Check(a, "outside the queue", h => h.WriteDescriptor(0, new D(Data, 1, D.FlagNext, Size)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void Loop(MetadataAccess a)
        => Check(a, "longer than the queue", h =>
        {
            h.WriteDescriptor(0, new D(Data, 1, D.FlagNext, 1));
            h.WriteDescriptor(1, new D(Data, 1, D.FlagNext, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void SelfLoop(MetadataAccess a)
        => Check(a, "longer than the queue", h => h.WriteDescriptor(0, new D(Data, 1, D.FlagNext, 0)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void ChainLongerThanTheQueueThroughAnIndirectTable(MetadataAccess a)
        => Check(a, "more than the queue size", h =>
        {
            var entries = Enumerable.Range(0, Size + 1).Select(i => new D(Data, 1, i < Size ? D.FlagNext : (ushort)0, (ushort)(i + 1))).ToArray();
            WriteTable(h.Guest, entries);
            h.WriteDescriptor(0, new D(Table, (uint)entries.Length * 16, D.FlagIndirect, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void LoopInsideAnIndirectTable(MetadataAccess a)
        => Check(a, "longer than its table", h =>
        {
            WriteTable(h.Guest, new D(Data, 1, D.FlagNext, 1), new D(Data, 1, D.FlagNext, 0));
            h.WriteDescriptor(0, new D(Table, 32, D.FlagIndirect, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void DescriptorOutsideGuestMemory(MetadataAccess a)
        => Check(a, "is not guest memory", h => h.WriteDescriptor(0, new D(TestGuest.Gpa(MiB) - 4, 8, 0, 0))); // last 4 bytes + 4 beyond

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void DescriptorBelowGuestMemory(MetadataAccess a)
        => Check(a, "is not writable guest memory", h => h.WriteDescriptor(0, new D(0x1000, 8, D.FlagWrite, 0)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void DescriptorInAHoleBetweenRegions(MetadataAccess a)
    {
        using var guest = new TestGuest(MiB, new RegionSpec(0, 0x48000), new RegionSpec(0x80000, 0x80000));
        Check(a, "is not guest memory", h => h.WriteDescriptor(0, new D(TestGuest.Gpa(0x50000), 8, 0, 0)), guest);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void AddressPlusLengthOverflows(MetadataAccess a)
        => Check(a, "overflows", h => h.WriteDescriptor(0, new D(ulong.MaxValue - 10, 100, D.FlagWrite, 0)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void WritableDescriptorInAReadOnlyRegion(MetadataAccess a)
    {
        // [0, 0x10000) holds the rings (writable); [0x10000, 0x20000) is read-only; the rest writable.
        using var guest = new TestGuest(MiB, new RegionSpec(0, 0x10000), new RegionSpec(0x10000, 0x10000, Writable: false), new RegionSpec(0x20000, MiB - 0x20000));
        guest.Bytes(Data, 64).Fill(0xEE);
        Check(a, "is not writable guest memory", h =>
        {
            h.WriteDescriptor(0, new D(Data + 0x1000, 8, D.FlagNext, 1)); // readable there: fine
            h.WriteDescriptor(1, new D(Data + 0x8000, 64, D.FlagWrite, 0)); // writable there: refused
        }, guest);
        Assert.All(guest.Bytes(Data, 64).ToArray(), b => Assert.Equal(0xEE, b));
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void WritableDescriptorCrossingIntoAReadOnlyRegion(MetadataAccess a)
    {
        using var guest = new TestGuest(MiB, new RegionSpec(0, 0x10000), new RegionSpec(0x10000, 0x10000, Writable: false), new RegionSpec(0x20000, MiB - 0x20000));
        Check(a, "is not writable guest memory", h => h.WriteDescriptor(0, new D(Data - 8, 16, D.FlagWrite, 0)), guest);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void NestedIndirect(MetadataAccess a)
        => Check(a, "nested indirect", h =>
        {
            WriteTable(h.Guest, new D(Data, 1, D.FlagNext, 1), new D(Table, 32, D.FlagIndirect, 0));
            h.WriteDescriptor(0, new D(Table, 32, D.FlagIndirect, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void EmptyIndirectTable(MetadataAccess a)
        => Check(a, "not a non-zero multiple of 16", h => h.WriteDescriptor(0, new D(Table, 0, D.FlagIndirect, 0)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndirectLengthNotAMultipleOf16(MetadataAccess a)
        => Check(a, "not a non-zero multiple of 16", h =>
        {
            WriteTable(h.Guest, new D(Data, 1, 0, 0), new D(Data, 1, 0, 0));
            h.WriteDescriptor(0, new D(Table, 24, D.FlagIndirect, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndirectWithNext(MetadataAccess a)
        => Check(a, "not alone", h =>
        {
            WriteTable(h.Guest, new D(Data, 1, 0, 0));
            h.WriteDescriptor(0, new D(Table, 16, D.FlagIndirect | D.FlagNext, 1));
            h.WriteDescriptor(1, new D(Data, 1, 0, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndirectAfterOtherDescriptors(MetadataAccess a)
        => Check(a, "not alone", h =>
        {
            WriteTable(h.Guest, new D(Data, 1, 0, 0));
            h.WriteDescriptor(0, new D(Data, 0, D.FlagNext, 1)); // even a zero-length one
            h.WriteDescriptor(1, new D(Table, 16, D.FlagIndirect, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndirectNextOutOfItsTable(MetadataAccess a)
        => Check(a, "outside its table", h =>
        {
            WriteTable(h.Guest, new D(Data, 1, D.FlagNext, 2), new D(Data, 1, 0, 0), new D(Data, 1, 0, 0));
            h.WriteDescriptor(0, new D(Table, 32, D.FlagIndirect, 0)); // entry 2 exists in memory but not in the table
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndirectTableOutsideGuestMemory(MetadataAccess a)
        => Check(a, "not guest memory", h => h.WriteDescriptor(0, new D(TestGuest.Gpa(MiB) - 16, 32, D.FlagIndirect, 0)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void IndirectTableAddressOverflows(MetadataAccess a)
        => Check(a, "not guest memory", h => h.WriteDescriptor(0, new D(ulong.MaxValue - 15, 32, D.FlagIndirect, 0)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void WriteOnlyBeforeReadOnly(MetadataAccess a)
        => Check(a, "device-readable descriptor after a device-writable one", h =>
        {
            h.WriteDescriptor(0, new D(Data, 8, D.FlagWrite | D.FlagNext, 1));
            h.WriteDescriptor(1, new D(Data + 8, 8, 0, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void WriteOnlyBeforeReadOnlyInsideAnIndirectTable(MetadataAccess a)
        => Check(a, "device-readable descriptor after a device-writable one", h =>
        {
            WriteTable(h.Guest, new D(Data, 8, D.FlagWrite | D.FlagNext, 1), new D(Data + 8, 8, 0, 0));
            h.WriteDescriptor(0, new D(Table, 32, D.FlagIndirect, 0));
        });

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void RingAreasOutsideGuestMemory(MetadataAccess a)
    {
        foreach (int area in new[] { 0, 1, 2 })
        {
            using var guest = new TestGuest(MiB);
            Check(a, "is not", h =>
            {
                var r = h.Device.Rings;
                ulong outside = TestGuest.Uva(TestGuest.Gpa(MiB) - 8); // starts inside, ends outside
                h.Device.SetRings(area switch { 0 => r with { Descriptors = outside }, 1 => r with { Avail = outside }, _ => r with { Used = outside } });
            }, guest);
        }
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void RingAddressesThatAreGuestPhysicalInsteadOfFrontendVirtual(MetadataAccess a)
        => Check(a, "not", h => h.Device.SetRings(new RingAddresses(h.Placement.Descriptors, h.Placement.Avail, h.Placement.Used)));

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void UsedRingInAReadOnlyRegionIsRefusedAndNeverWritten(MetadataAccess a)
    {
        // The rings live in a read-only region (the used ring is mapped read-only: writing it would fault).
        using var guest = new TestGuest(MiB, new RegionSpec(0, 0x1000, Writable: false), new RegionSpec(0x1000, MiB - 0x1000));
        Check(a, "used ring", h =>
        {
            h.WriteDescriptor(0, new D(Data, 8, 0, 0));
        }, guest);
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void QueueSizeNeverSetBreaksOnAttach(MetadataAccess a)
    {
        using var guest = new TestGuest(MiB);
        var q = new SplitQueue(3, a);
        Assert.False(q.Attach(guest.Domain.Current));
        Assert.Contains("size", q.BrokenReason);
        Assert.Throws<VirtqueueException>(() => q.SetSize(3));
        Assert.Throws<VirtqueueException>(() => q.SetSize(0));
        Assert.Throws<VirtqueueException>(() => q.SetSize(65536));
    }
}

public class LargeDescriptorTests
{
    /// <summary>
    /// A descriptor may legally be up to 4 GiB - 1 long; spans are int-sized. A 2.25 GiB buffer in a
    /// 3 GiB region must come out as segments a Span can cover, not as a crash in the device.
    /// </summary>
    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void DescriptorsLongerThanASpanAreSplit(MetadataAccess access)
    {
        const ulong size = 3UL << 30; // sparse memfd: only touched pages use memory
        using var guest = new TestGuest(size);
        var h = new QueueHarness(guest, 4, access);
        ulong data = TestGuest.Gpa(1UL << 20);
        const uint huge = 0x9000_0000;
        Assert.True(h.Driver.TryAdd([new(data, huge, false), new(data, 16, true)], out ushort head));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.True(h.Device.TryPop(h.Chain), h.Device.BrokenReason);
        Assert.Equal(huge, h.Chain.ReadableBytes);
        Assert.True(h.Chain.ReadableCount >= 2);
        ulong total = 0, next = data;
        foreach (var s in h.Chain.Readable)
        {
            Assert.True(s.Length <= int.MaxValue);
            Assert.Equal(next, s.GuestAddress);
            Assert.Equal((int)s.Length, h.Chain.GetSpan(s).Length);
            total += s.Length;
            next += s.Length;
        }
        Assert.Equal(huge, total);
        // The last byte of the buffer is reachable through its segment.
        var last = h.Chain.Readable[^1];
        guest.Bytes(data + huge - 1, 1)[0] = 0x77;
        Assert.Equal(0x77, h.Chain.GetSpan(last)[^1]);
        h.Device.Push(h.Chain, 16);
        Assert.True(h.Driver.TryGetUsed(out ushort id, out uint len));
        Assert.Equal((head, 16u), (id, len));
    }
}

/// <summary>The driver side does not trust the device either: it may rewrite the descriptor table.</summary>
public class HostileDeviceTests
{
    [Fact]
    public void DeviceRewritingNextLinksCannotSteerTheDriverOutsideItsTable()
    {
        using var guest = new TestGuest(2 << 20);
        var h = new QueueHarness(guest, 8, MetadataAccess.Direct);
        ulong data = TestGuest.Gpa(0x10000);
        ulong canary = h.Placement.Descriptors + 0xFFFFUL * 16; // where descriptor 0xFFFF would be
        guest.Bytes(canary, 16).Fill(0xA5);
        Assert.True(h.Driver.TryAdd([new(data, 1, false), new(data, 1, false), new(data, 1, true)], out ushort head));
        h.Driver.Publish();
        Assert.True(h.Attach());
        Assert.True(h.Device.TryPop(h.Chain));
        // The device scribbles over every descriptor's next field, in flight or free.
        for (int i = 0; i < 8; i++)
            BitConverter.TryWriteBytes(guest.Bytes(h.Placement.Descriptors + (ulong)i * 16 + 14, 2), (ushort)0xFFFF);
        h.Device.Push(h.Chain, 1);
        Assert.True(h.Driver.TryGetUsed(out ushort id, out _));
        Assert.Equal(head, id);
        Assert.Equal(8, h.Driver.FreeCount);
        // The driver still hands out exactly its eight descriptors, and nothing beyond the table was written.
        var heads = new HashSet<ushort>();
        for (int i = 0; i < 8; i++)
        {
            Assert.True(h.Driver.TryAdd([new(data, 1, false)], out ushort x));
            Assert.InRange(x, 0, 7);
            Assert.True(heads.Add(x));
        }
        Assert.False(h.Driver.TryAdd([new(data, 1, false)], out _));
        Assert.All(guest.Bytes(canary, 16).ToArray(), b => Assert.Equal(0xA5, b));
        h.Driver.Publish();
        Assert.True(h.Attach());
        for (int i = 0; i < 8; i++) { Assert.True(h.Device.TryPop(h.Chain), h.Device.BrokenReason); h.Device.AddUsed(h.Chain.Id, 0); }
        h.Device.FlushUsed();
        for (int i = 0; i < 8; i++) Assert.True(h.Driver.TryGetUsed(out _, out _));
        Assert.Equal(8, h.Driver.FreeCount);
    }
}
