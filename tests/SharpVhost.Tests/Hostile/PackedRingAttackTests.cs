using System.Buffers.Binary;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// The same guest attacks on packed rings (RING_PACKED negotiated), over a real socket: the attacked
/// queue is declared broken, the other packed queue and the connection keep working.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class PackedRingAttackTests
{
    private const ushort Next = 1, Write = 2, Indirect = 4, Avail = PackedRingLayout.FlagAvail;
    private const int Size = 16;

    private sealed record PackedQueue(int Index, PackedDriverQueue Ring, PackedRingPlacement Placement, EventFd Kick, EventFd Call, EventFd Err);

    private static PackedQueue Start(HostileFrontend h, int index, uint vringBase = 0x8000_8000)
    {
        var memory = h.Memory!;
        var p = PackedRingPlacement.At(memory.Allocate(PackedRingPlacement.At(0, Size).End + 16, 4096), Size);
        var ring = new PackedDriverQueue(memory.Memory, p, Size, eventIndex: false);
        var q = new PackedQueue(index, ring, p, h.Own(EventFd.Create(nonBlocking: true)), h.Own(EventFd.Create(nonBlocking: true)), h.Own(EventFd.Create(nonBlocking: true)));
        h.Ok(FrontEndRequest.SetVringNum, new VringState((uint)index, Size));
        h.Ok(FrontEndRequest.SetVringBase, new VringState((uint)index, vringBase));
        h.Ok(FrontEndRequest.SetVringAddr, new VringAddress((uint)index, VringAddressFlags.None,
            memory.ToFrontendVirtual(p.Descriptors), memory.ToFrontendVirtual(p.DeviceArea), memory.ToFrontendVirtual(p.DriverArea), 0));
        h.Ok(FrontEndRequest.SetVringCall, new VringFd((byte)index, false), [q.Call.Fd]);
        h.Ok(FrontEndRequest.SetVringErr, new VringFd((byte)index, false), [q.Err.Fd]);
        h.Ok(FrontEndRequest.SetVringKick, new VringFd((byte)index, false), [q.Kick.Fd]);
        h.Ok(FrontEndRequest.SetVringEnable, new VringState((uint)index, 1));
        return q;
    }

    private static void Prepare(HostileFrontend h)
    {
        h.Greet();
        Assert.True(VirtioFeatureBits.Has(h.OfferedFeatures, VirtioFeatureBits.RingPacked));
        h.SetFeatures(HostileFrontend.DriverFeatures | VirtioFeatureBits.Bit(VirtioFeatureBits.RingPacked));
        h.ShareMemory(1 << 20);
    }

    private static void AssertServes(HostileFrontend h, PackedQueue q) => AssertServes(h, q.Index, q.Ring, q.Kick);

    /// <summary>GET_ID through the well-behaved packed driver: the queue is alive (shared with the inflight layout attacks).</summary>
    internal static void AssertServes(HostileFrontend h, int index, PackedDriverQueue ring, EventFd kick)
    {
        var m = h.Memory!;
        ulong header = m.Allocate(64, 64);
        var span = m.GetSpan(header, 64);
        span.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, VirtioBlk.TypeGetId);
        span[36] = 0xff;
        Assert.True(ring.TryAdd([new DriverBuffer(header, 16, false), new DriverBuffer(header + 16, 20, true), new DriverBuffer(header + 36, 1, true)], out _));
        ring.Publish();
        kick.Signal();
        var deadline = DateTime.UtcNow + Backend.TestServer.Timeout;
        while (!ring.TryGetUsed(out _, out _))
        {
            Assert.True(DateTime.UtcNow < deadline, $"packed queue {index}: no used buffer");
            Thread.Sleep(1);
        }
        Assert.Equal(VirtioBlk.StatusOk, m.GetSpan(header + 36, 1)[0]);
        Assert.Equal("hostile-test", System.Text.Encoding.ASCII.GetString(m.GetSpan(header + 16, 12)));
    }

    private static void WriteDescriptor(HostileFrontend h, PackedQueue q, int slot, ulong address, uint length, ushort id, ushort flags)
    {
        var d = h.Memory!.GetSpan(q.Placement.Descriptors + 16ul * (ulong)slot, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, address);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], id);
        Thread.MemoryBarrier();
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], flags);
    }

    private static void BreaksOnlyThatQueue(Action<HostileFrontend, PackedQueue> poison) => Attack.Run(h =>
    {
        Prepare(h);
        var victim = Start(h, 0);
        var other = Start(h, 1);
        poison(h, victim);
        victim.Kick.Signal();
        HostileFrontend.AssertBroken(new HostileQueue(0, null!, victim.Kick, victim.Call, victim.Err));
        AssertServes(h, other);
        using var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0));
        Assert.NotNull(reply);
        AssertServes(h, other);
    });

    [Fact]
    public void APackedQueueServes()
    {
        Attack.Run(h =>
        {
            Prepare(h);
            var q = Start(h, 0);
            for (int i = 0; i < 3 * Size; i++) AssertServes(h, q); // several laps: both wrap counters turn
        });
    }

    [Fact]
    public void AChainThatNeverEnds()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong buf = h.Memory!.Allocate(16, 16);
            for (int i = 0; i < Size; i++) WriteDescriptor(h, q, i, buf, 16, 0, Avail | Next);
        });
    }

    [Fact]
    public void AChainWhoseNextDescriptorIsNotAvailable()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong buf = h.Memory!.Allocate(16, 16);
            WriteDescriptor(h, q, 1, buf, 16, 0, 0); // not made available
            WriteDescriptor(h, q, 0, buf, 16, 0, Avail | Next);
        });
    }

    [Theory]
    [InlineData((ushort)Size)]
    [InlineData(ushort.MaxValue)]
    public void ABufferIdOutOfRange(ushort id)
    {
        BreaksOnlyThatQueue((h, q) => WriteDescriptor(h, q, 0, h.Memory!.Allocate(16, 16), 16, id, Avail));
    }

    [Fact]
    public void AnIndirectTableIsAPlainArrayWhateverItsEntriesClaim()
    {
        // Packed indirect tables have no links: NEXT and INDIRECT on an entry are reserved and ignored,
        // so neither a loop nor nesting can be expressed; the walk is bounded by the table length.
        Attack.Run(h =>
        {
            Prepare(h);
            var q = Start(h, 0);
            var other = Start(h, 1);
            var m = h.Memory!;
            ulong header = m.Allocate(32, 16);
            m.GetSpan(header, 32).Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(m.GetSpan(header, 4), VirtioBlk.TypeFlush);
            m.GetSpan(header + 16, 1)[0] = 0xff;
            ulong table = m.Allocate(32, 16);
            void Entry(int i, ulong address, uint length, ushort id, ushort flags)
            {
                var e = m.GetSpan(table + 16ul * (ulong)i, 16);
                BinaryPrimitives.WriteUInt64LittleEndian(e, address);
                BinaryPrimitives.WriteUInt32LittleEndian(e[8..], length);
                BinaryPrimitives.WriteUInt16LittleEndian(e[12..], id);
                BinaryPrimitives.WriteUInt16LittleEndian(e[14..], flags);
            }
            Entry(0, header, 16, 0, Next | Indirect);      // claims to continue and to nest: both ignored
            Entry(1, header + 16, 1, 9, Write | Next);       // claims to continue past the table: ignored
            WriteDescriptor(h, q, 0, table, 32, 0, Avail | Indirect);
            q.Kick.Signal();
            var deadline = DateTime.UtcNow + Backend.TestServer.Timeout;
            while (m.GetSpan(header + 16, 1)[0] == 0xff) { Assert.True(DateTime.UtcNow < deadline, "request never completed"); Thread.Sleep(1); }
            Assert.Equal(VirtioBlk.StatusOk, m.GetSpan(header + 16, 1)[0]);
            AssertServes(h, other);
        });
    }

    [Fact]
    public void AnIndirectTableLargerThanTheQueue()
    {
        BreaksOnlyThatQueue((h, q) =>
        {
            ulong table = h.Memory!.Allocate(16 * (Size + 1), 16);
            WriteDescriptor(h, q, 0, table, 16 * (Size + 1), 0, Avail | Indirect);
        });
    }

    [Fact]
    public void ABufferOutsideMemory()
    {
        BreaksOnlyThatQueue((h, q) => WriteDescriptor(h, q, 0, 1ul << 40, 16, 0, Avail | Write));
    }

    [Theory]
    [InlineData(0x8000_8000u | Size)]       // avail position past the ring
    [InlineData(0x8000_8000u | (Size << 16))] // used position past the ring
    public void AVringBaseOutsideTheRing(uint vringBase)
    {
        Attack.Run(h =>
        {
            Prepare(h);
            var other = Start(h, 1);
            var outcome = h.Request(FrontEndRequest.SetVringBase, new VringState(0, vringBase));
            if (outcome == Outcome.Ack)
            {
                // Accepted for now: then the ring must refuse to run on it.
                var memory = h.Memory!;
                var p = PackedRingPlacement.At(memory.Allocate(PackedRingPlacement.At(0, Size).End + 16, 4096), Size);
                var err = h.Own(EventFd.Create(nonBlocking: true));
                var kick = h.Own(EventFd.Create(nonBlocking: true));
                h.Ok(FrontEndRequest.SetVringNum, new VringState(0, Size));
                h.Ok(FrontEndRequest.SetVringBase, new VringState(0, vringBase));
                h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None,
                    memory.ToFrontendVirtual(p.Descriptors), memory.ToFrontendVirtual(p.DeviceArea), memory.ToFrontendVirtual(p.DriverArea), 0));
                h.Ok(FrontEndRequest.SetVringErr, new VringFd(0, false), [err.Fd]);
                h.Ok(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]);
                h.Ok(FrontEndRequest.SetVringEnable, new VringState(0, 1));
                kick.Signal();
                HostileFrontend.AssertBroken(new HostileQueue(0, null!, kick, kick, err));
            }
            AssertServes(h, other);
        });
    }
}
