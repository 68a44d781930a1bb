using System.Buffers.Binary;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;
using Region = SharpVhost.VhostUser.Protocol.MemoryRegion;
using GuestRegion = SharpVhost.Memory.MemoryRegion;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// What a guest can make the backend spend: a chain is never longer than the queue, an indirect
/// table never has more entries than the queue, and no more chains are in flight than the ring
/// holds. Each limit is probed from both sides: the largest legal value is served, one more breaks
/// only that queue. Also: a broken queue comes back when the frontend restarts it, and memory the
/// frontend shared read-only is never written.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class ResourceLimitTests
{
    private const ushort Next = VirtqDescriptor.FlagNext, Write = VirtqDescriptor.FlagWrite, Indirect = VirtqDescriptor.FlagIndirect;
    private const int QueueSize = 16;

    /// <summary>A read of <paramref name="dataDescriptors"/> x 512 bytes: header, data buffers, status.</summary>
    private static VirtqDescriptor[] ReadChain(SharedMemory m, int dataDescriptors, out ulong header, out ulong data, bool linkForIndirect = true)
    {
        header = m.Allocate(32, 64);
        data = m.Allocate((ulong)dataDescriptors * 512, 4096);
        var h = m.GetSpan(header, 32);
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h, VirtioBlk.TypeIn);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], 8192); // 4 MiB in: never written by the suite's clients
        h[16] = 0xff;
        var chain = new VirtqDescriptor[dataDescriptors + 2];
        chain[0] = new VirtqDescriptor(header, 16, Next, 1);
        for (int i = 0; i < dataDescriptors; i++) chain[i + 1] = new VirtqDescriptor(data + (ulong)i * 512, 512, Write | Next, (ushort)(i + 2));
        chain[^1] = new VirtqDescriptor(header + 16, 1, Write, 0);
        return chain;
    }

    private static void ExpectRead(HostileFrontend h, HostileQueue q, ushort head, ulong header, ulong data, int dataDescriptors)
    {
        var (id, length) = h.WaitUsedRaw(q);
        Assert.Equal(head, id);
        Assert.Equal((uint)(dataDescriptors * 512 + 1), length);
        Assert.Equal(VirtioBlk.StatusOk, h.Memory!.GetSpan(header + 16, 1)[0]);
        Assert.True(h.Memory.GetSpan(data, dataDescriptors * 512).IndexOfAnyExcept((byte)0) < 0); // an unwritten RAM disk reads zeroes
    }

    [Fact]
    public void AChainAsLongAsTheQueueIsServed()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0, QueueSize);
            var chain = ReadChain(h.Memory!, QueueSize - 2, out ulong header, out ulong data);
            h.Memory!.GetSpan(data, (QueueSize - 2) * 512).Fill(0xAA);
            for (int i = 0; i < chain.Length; i++) h.WriteDescriptor(q, i, chain[i]);
            h.OfferRaw(q, 0);
            ExpectRead(h, q, 0, header, data, QueueSize - 2);
        });
    }

    [Fact]
    public void AnIndirectTableAsLargeAsTheQueueIsServed()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0, QueueSize);
            var chain = ReadChain(h.Memory!, QueueSize - 2, out ulong header, out ulong data);
            ulong table = h.Memory!.Allocate(16 * QueueSize, 16);
            for (int i = 0; i < chain.Length; i++) h.Memory.Memory.Write(table + 16ul * (ulong)i, chain[i]);
            h.WriteDescriptor(q, 5, new VirtqDescriptor(table, 16 * QueueSize, Indirect, 0));
            h.OfferRaw(q, 5);
            ExpectRead(h, q, 5, header, data, QueueSize - 2);
        });
    }

    [Fact]
    public void AnIndirectTableLargerThanTheQueueBreaksIt()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0, QueueSize);
            var other = h.StartQueue(1, QueueSize);
            var chain = ReadChain(h.Memory!, QueueSize - 1, out _, out _);
            ulong table = h.Memory!.Allocate(16 * (QueueSize + 1), 16);
            for (int i = 0; i < chain.Length; i++) h.Memory.Memory.Write(table + 16ul * (ulong)i, chain[i]);
            h.WriteDescriptor(q, 5, new VirtqDescriptor(table, 16 * (QueueSize + 1), Indirect, 0));
            h.OfferRaw(q, 5);
            HostileFrontend.AssertBroken(q);
            h.AssertQueueServes(other);
        });
    }

    [Fact]
    public void AChainLongerThanTheQueueCanOnlyBeALoopAndIsStopped()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0, QueueSize);
            var other = h.StartQueue(1, QueueSize);
            // Every descriptor links to the next and the last to the first: without the cap the walk never ends.
            ulong buf = h.Memory!.Allocate(16, 16);
            for (int i = 0; i < QueueSize; i++) h.WriteDescriptor(q, i, new VirtqDescriptor(buf, 16, Next, (ushort)((i + 1) % QueueSize)));
            h.OfferRaw(q, 0);
            HostileFrontend.AssertBroken(q);
            h.AssertQueueServes(other);
        });
    }

    [Fact]
    public void NoMoreChainsInFlightThanTheRingHolds()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0, QueueSize);
            var other = h.StartQueue(1, QueueSize);
            // A full ring is fine: every chain comes back.
            var heads = new List<ushort>();
            for (int i = 0; i < QueueSize; i++)
            {
                ulong header = h.Memory!.Allocate(32, 32);
                var span = h.Memory.GetSpan(header, 32);
                span.Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(span, VirtioBlk.TypeFlush);
                Assert.True(q.Ring.TryAddIndirect(h.Memory.Memory, h.Memory.Allocate(32, 16), [new DriverBuffer(header, 16, false), new DriverBuffer(header + 16, 1, true)], out ushort head));
                heads.Add(head);
            }
            Assert.Equal(0, q.Ring.FreeCount);
            q.Ring.Publish();
            q.Kick.Signal();
            var seen = new HashSet<ushort>();
            for (int i = 0; i < QueueSize; i++) seen.Add(HostileFrontend.WaitUsed(q).Id);
            Assert.Equal(heads.ToHashSet(), seen);
            // An avail index claiming one more than the ring holds breaks the queue.
            ushort current = h.Memory!.Memory.Read<ushort>(q.Ring.Placement.Avail + 2);
            h.OfferRaw(q, 0, availIndex: (ushort)(current + QueueSize + 1));
            HostileFrontend.AssertBroken(q);
            h.AssertQueueServes(other);
        });
    }

    [Fact]
    public void ABrokenQueueServesAgainOnceTheFrontendRestartsIt()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0, QueueSize);
            h.WriteDescriptor(q, 3, new VirtqDescriptor(1ul << 40, 16, 0, 0));
            h.OfferRaw(q, 3);
            HostileFrontend.AssertBroken(q);
            // What QEMU does when the guest resets the device: stop the ring, then set it up afresh.
            using (var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0))) Assert.NotNull(reply);
            var fresh = h.StartQueue(0, QueueSize);
            h.AssertQueueServes(fresh);
        });
    }

    [Fact]
    public void MemorySharedReadOnlyIsNeverWritten()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            // A file the backend receives opened read-only: it can map it only read-only (rule 1), so a
            // used ring placed there cannot be written and the queue stops instead of faulting.
            string dir = Directory.CreateTempSubdirectory("sv-ro-mem-").FullName;
            try
            {
                string path = Path.Combine(dir, "mem");
                using (var f = File.Create(path)) f.SetLength(1 << 20);
                using var rw = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
                using var ro = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                var mine = GuestRegion.Map(rw, new RegionDescription(0, 1 << 20, SharedMemory.VirtualBase, 0));
                try
                {
                    var local = GuestMemory.Create([mine], null, 1);
                    h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([new Region(0, 1 << 20, SharedMemory.VirtualBase, 0)]), [ro.Fd()]);
                    var p = SplitRingPlacement.At(0, QueueSize);
                    var ring = new SplitDriverQueue(local, p, QueueSize, eventIndex: false);
                    var kick = h.Own(EventFd.Create(nonBlocking: true));
                    var err = h.Own(EventFd.Create(nonBlocking: true));
                    h.Ok(FrontEndRequest.SetVringNum, new VringState(0, QueueSize));
                    h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None, SharedMemory.VirtualBase + p.Descriptors,
                        SharedMemory.VirtualBase + p.Used, SharedMemory.VirtualBase + p.Avail, 0));
                    h.Ok(FrontEndRequest.SetVringErr, new VringFd(0, false), [err.Fd]);
                    h.Ok(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]);
                    h.Ok(FrontEndRequest.SetVringEnable, new VringState(0, 1));
                    local.GetSpan(8192, 16, write: true).Fill(0);
                    Assert.True(ring.TryAdd([new DriverBuffer(8192, 16, false), new DriverBuffer(8192 + 16, 1, true)], out _));
                    ring.Publish();
                    kick.Signal();
                    HostileFrontend.AssertBroken(new HostileQueue(0, ring, kick, kick, err));
                    Assert.Equal(0, local.Read<ushort>(p.Used + 2)); // nothing was published
                    Assert.Equal(0, local.Read<byte>(8192 + 16));    // nor any status written
                    Assert.Equal(2UL, h.GetU64(FrontEndRequest.GetQueueNum));
                }
                finally { mine.Dispose(); }
            }
            finally { Directory.Delete(dir, recursive: true); }
        });
    }
}
