using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;
using Region = SharpVhost.VhostUser.Protocol.MemoryRegion;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// Rings a guest or frontend gets wrong while the queue runs: the queue is declared broken (its
/// error eventfd is signalled), while the connection and the other queue keep working.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class RingAttackTests
{
    private const ushort Next = VirtqDescriptor.FlagNext, Write = VirtqDescriptor.FlagWrite, Indirect = VirtqDescriptor.FlagIndirect;

    /// <summary>Two running queues; <paramref name="poison"/> breaks queue 0; queue 1 and the connection must be fine.</summary>
    private static void BreaksOnlyThatQueue(Action<HostileFrontend, HostileQueue> poison, int size = 16) => Attack.Run(h =>
    {
        h.Prepare();
        var victim = h.StartQueue(0, size);
        var other = h.StartQueue(1, size);
        h.AssertQueueServes(victim);
        poison(h, victim);
        HostileFrontend.AssertBroken(victim);
        h.AssertQueueServes(other);
        Assert.Equal(2UL, h.GetU64(FrontEndRequest.GetQueueNum));
        // Stopping the broken ring still answers.
        using var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0));
        Assert.NotNull(reply);
        h.AssertQueueServes(other);
    });

    private static ulong Scratch(HostileFrontend h, ulong bytes = 4096) => h.Memory!.Allocate(bytes, 64);

    [Fact]
    public void ADescriptorLoop()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong buf = Scratch(h);
            h.WriteDescriptor(q, 5, new VirtqDescriptor(buf, 16, Next, 6));
            h.WriteDescriptor(q, 6, new VirtqDescriptor(buf + 16, 16, Next, 5));
            h.OfferRaw(q, 5);
        });
    }

    [Fact]
    public void ADescriptorThatLinksToItself()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            h.WriteDescriptor(q, 7, new VirtqDescriptor(Scratch(h), 16, Next, 7));
            h.OfferRaw(q, 7);
        });
    }

    [Fact]
    public void AnIndirectTableThatLinksToItself()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong table = Scratch(h);
            ulong buf = Scratch(h);
            h.Memory!.Memory.Write(table, new VirtqDescriptor(buf, 16, Next, 1));
            h.Memory.Memory.Write(table + 16, new VirtqDescriptor(buf + 16, 16, Next, 0));
            h.WriteDescriptor(q, 3, new VirtqDescriptor(table, 32, Indirect, 0));
            h.OfferRaw(q, 3);
        });
    }

    [Fact]
    public void AnIndirectTableThatContainsItself()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong table = Scratch(h);
            h.Memory!.Memory.Write(table, new VirtqDescriptor(table, 16, Indirect, 0)); // nested: points at its own table
            h.WriteDescriptor(q, 3, new VirtqDescriptor(table, 16, Indirect, 0));
            h.OfferRaw(q, 3);
        });
    }

    [Fact]
    public void AnIndirectDescriptorInTheMiddleOfAChain()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong table = Scratch(h);
            h.Memory!.Memory.Write(table, new VirtqDescriptor(Scratch(h), 16, 0, 0));
            h.WriteDescriptor(q, 2, new VirtqDescriptor(Scratch(h), 16, Next, 3));
            h.WriteDescriptor(q, 3, new VirtqDescriptor(table, 16, Indirect, 0));
            h.OfferRaw(q, 2);
        });
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(24u)]               // not a multiple of 16
    public void AnIndirectTableWithABadLength(uint length)
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            h.WriteDescriptor(q, 3, new VirtqDescriptor(Scratch(h), length, Indirect, 0));
            h.OfferRaw(q, 3);
        });
    }

    [Fact]
    public void AnIndirectTableOutsideMemory()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            h.WriteDescriptor(q, 3, new VirtqDescriptor(1ul << 40, 32, Indirect, 0));
            h.OfferRaw(q, 3);
        });
    }

    [Fact]
    public void ANextLinkPastTheTable()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            h.WriteDescriptor(q, 4, new VirtqDescriptor(Scratch(h), 16, Next, 16));
            h.OfferRaw(q, 4);
        });
    }

    [Fact]
    public void AnAvailEntryPastTheTable()
    {
        BreaksOnlyThatQueue((h, q) => h.OfferRaw(q, 16));
    }

    [Fact]
    public void AnAvailIndexMoreThanTheRingAhead()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ushort current = h.Memory!.Memory.Read<ushort>(q.Ring.Placement.Avail + 2);
            h.WriteDescriptor(q, 0, new VirtqDescriptor(Scratch(h), 16, 0, 0));
            h.OfferRaw(q, 0, availIndex: (ushort)(current + 17));
        });
    }

    [Theory]
    [InlineData(1ul << 40, 16u)]             // nowhere
    [InlineData((1ul << 20) - 8, 16u)]      // runs off the end of memory
    [InlineData(ulong.MaxValue - 7, 16u)]   // wraps
    public void ABufferOutsideMemory(ulong address, uint length)
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            h.WriteDescriptor(q, 9, new VirtqDescriptor(address, length, 0, 0));
            h.OfferRaw(q, 9);
        });
    }

    [Fact]
    public void AReadableBufferAfterAWritableOne()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong buf = Scratch(h);
            h.WriteDescriptor(q, 1, new VirtqDescriptor(buf, 16, Write | Next, 2));
            h.WriteDescriptor(q, 2, new VirtqDescriptor(buf + 16, 16, 0, 0));
            h.OfferRaw(q, 1);
        });
    }

    [Theory]
    [InlineData("descriptors")]
    [InlineData("avail")]
    [InlineData("used")]
    public void RingsOutsideMemory(string which)
    {
        Attack.Run(h =>
        {
            var memory = h.Prepare();
            var good = h.StartQueue(1);
            var p = SplitRingPlacement.At(memory.Allocate(8192, 4096), 16);
            ulong nowhere = 0x7777_0000_0000;
            var kick = h.Own(Interop.EventFd.Create(nonBlocking: true));
            var err = h.Own(Interop.EventFd.Create(nonBlocking: true));
            h.Ok(FrontEndRequest.SetVringNum, new VringState(0, 16));
            h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None,
                which == "descriptors" ? nowhere : memory.ToFrontendVirtual(p.Descriptors),
                which == "used" ? nowhere : memory.ToFrontendVirtual(p.Used),
                which == "avail" ? nowhere : memory.ToFrontendVirtual(p.Avail), 0));
            h.Ok(FrontEndRequest.SetVringErr, new VringFd(0, false), [err.Fd]);
            h.Ok(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]);
            h.Ok(FrontEndRequest.SetVringEnable, new VringState(0, 1));
            if (which == "descriptors")
            {
                // The descriptor table is read only when there is a chain: offer one.
                var m = memory.Memory;
                m.Write(p.Avail + 4, (ushort)0);
                m.Write(p.Avail + 2, (ushort)1);
            }
            kick.Signal();
            HostileFrontend.AssertBroken(new HostileQueue(0, null!, kick, kick, err));
            h.AssertQueueServes(good);
        });
    }

    /// <summary>
    /// Found by the session fuzz target: the error "eventfd" is whatever fd the frontend sent. When it
    /// cannot be written (here a read-only file), signalling a broken queue threw on the worker thread,
    /// outside its try, and the unhandled exception ended the whole backend process.
    /// </summary>
    [Fact]
    public void AnErrFdThatCannotBeWrittenDoesNotEndTheProcess()
    {
        Attack.Run(h =>
        {
            var memory = h.Prepare();
            var good = h.StartQueue(1);
            var p = SplitRingPlacement.At(memory.Allocate(8192, 4096), 16);
            var kick = h.Own(Interop.EventFd.Create(nonBlocking: true));
            using var readOnly = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
            h.Ok(FrontEndRequest.SetVringNum, new VringState(0, 16));
            h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None,
                memory.ToFrontendVirtual(p.Descriptors), 0x7777_0000_0000, memory.ToFrontendVirtual(p.Avail), 0));
            h.Ok(FrontEndRequest.SetVringErr, new VringFd(0, false), [(int)readOnly.DangerousGetHandle()]);
            h.Ok(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]);
            h.Ok(FrontEndRequest.SetVringEnable, new VringState(0, 1));
            kick.Signal();
            Thread.Sleep(200); // the worker finds the used ring outside memory and breaks the queue
            // Stopping the ring joins the worker: it has signalled (or failed to signal) by now.
            using (var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0))) Assert.NotNull(reply);
            h.AssertQueueServes(good);
        });
    }

    [Fact]
    public void ARingThatRunsFromARegionIntoAHoleBreaksTheQueue()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            // Two regions of one memfd with a hole between them (in both address spaces).
            var memory = h.Own(new SharedMemory(1 << 20));
            const ulong half = 1 << 19;
            h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([
                new Region(0, half - 4096, SharedMemory.VirtualBase, 0),
                new Region(half, half, SharedMemory.VirtualBase + half, half)]), [memory.Fd.Fd(), memory.Fd.Fd()]);
            var kick = h.Own(Interop.EventFd.Create(nonBlocking: true));
            var err = h.Own(Interop.EventFd.Create(nonBlocking: true));
            // The used ring starts in the first region and ends in the hole.
            ulong used = half - 4096 - 64;
            h.Ok(FrontEndRequest.SetVringNum, new VringState(0, 16));
            h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None,
                memory.ToFrontendVirtual(half), memory.ToFrontendVirtual(used), memory.ToFrontendVirtual(half + 4096), 0));
            h.Ok(FrontEndRequest.SetVringErr, new VringFd(0, false), [err.Fd]);
            h.Ok(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]);
            h.Ok(FrontEndRequest.SetVringEnable, new VringState(0, 1));
            // Chains of a single writable buffer fill used slots until one lies in the hole.
            var m = memory.Memory;
            m.Write(half, new VirtqDescriptor(half + 8192, 1, Write, 0));
            for (ushort i = 0; i < 16; i++) m.Write(half + 4096 + 4 + 2ul * i, (ushort)0);
            m.Write(half + 4096 + 2, (ushort)16);
            kick.Signal();
            HostileFrontend.AssertBroken(new HostileQueue(0, null!, kick, kick, err));
            Assert.Equal(2UL, h.GetU64(FrontEndRequest.GetQueueNum));
        });
    }

    [Fact]
    public void ARingThatStraddlesTwoAdjacentRegionsIsServed()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            // One memfd described as two regions that touch: a ring across the seam is legal.
            var memory = h.Own(new SharedMemory(1 << 20));
            const ulong seam = 1 << 19;
            h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([
                new Region(0, seam, SharedMemory.VirtualBase, 0),
                new Region(seam, seam, SharedMemory.VirtualBase + seam, seam)]), [memory.Fd.Fd(), memory.Fd.Fd()]);
            h.UseMemory(memory);
            var q = h.StartQueue(0, size: 16, placement: SplitRingPlacement.At(seam - 128, 16)); // the descriptor table crosses the seam
            Assert.True(q.Ring.Placement.Descriptors < seam && q.Ring.Placement.Descriptors + 256 > seam);
            h.AssertQueueServes(q);
            h.AssertQueueServes(q);
        }, afterwards: server =>
        {
            // Both rounds fell back from direct pointers to checked access for that queue.
            Assert.Contains(server.EndedSessions, s => s.Queues[0].Counters.DirectFallbacks > 0);
        });
    }
}
