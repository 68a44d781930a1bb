using System.Buffers.Binary;
using SharpVhost.Devices.Block;
using SharpVhost.Tests.Backend;
using SharpVhost.Tests.Block;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;
using Region = SharpVhost.VhostUser.Protocol.MemoryRegion;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// A frontend that takes memory away while reads into it are in flight on a slow disk (each request
/// completes a while after it started, its data written into guest memory then, as DMA would be).
/// The reply to the change must come only once those reads completed and were published: the backend
/// runs in this process, so a read landing in memory it had unmapped would crash the test run.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class InFlightMemoryChangeTests
{
    private const ulong RegionSize = 1 << 20;
    private const ulong DataBase = RegionSize; // region B: guest-physical [1 MiB, 2 MiB)
    private const int Reads = 4, ReadBytes = 4096;

    private sealed class Setup : IDisposable
    {
        public required TestServer Server;
        public required HostileFrontend Frontend;
        public required EngineStorage Storage;
        public required SharedMemory A, B;
        public required HostileQueue Queue;
        public readonly List<(ushort Id, ulong Data, ulong Status)> Offered = [];
        public DelayedEngine Engine => (DelayedEngine)Storage.Engines.Single();
        public static Region RegionA(SharedMemory a) => new(0, a.Size, SharedMemory.VirtualBase, 0);
        public static Region RegionB(SharedMemory b) => new(DataBase, b.Size, SharedMemory.VirtualBase + DataBase, 0);

        public bool Ended;

        public void Dispose()
        {
            if (!Ended) Frontend.Dispose();
            Server.WaitAllSessionsEnded();
            Server.Dispose();
            Storage.Dispose();
        }
    }

    private static Setup Start(TimeSpan delay, BackendOptions? options = null, bool honourCancel = true)
    {
        var storage = new EngineStorage(8 << 20, (ram, depth) => new DelayedEngine(ram, depth, delay) { HonourCancel = honourCancel });
        var server = new TestServer(new BlockDevice(storage, new BlockDeviceOptions { Serial = "hostile-test" }), options);
        var h = HostileFrontend.Connect(server);
        h.Greet();
        h.SetFeatures();
        var a = h.Own(new SharedMemory(RegionSize));
        var b = h.Own(new SharedMemory(RegionSize));
        h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([Setup.RegionA(a), Setup.RegionB(b)]), [a.Fd.Fd(), b.Fd.Fd()]);
        h.UseMemory(a);
        var q = h.StartQueue(0, size: 32);
        var pattern = new byte[Reads * ReadBytes];
        for (int i = 0; i < pattern.Length; i++) pattern[i] = (byte)(i * 7 + (i >> 12) + 1);
        storage.Ram.Write(pattern, 0);
        return new Setup { Server = server, Frontend = h, Storage = storage, A = a, B = b, Queue = q };
    }

    /// <summary>Offers reads whose data buffers lie in region B (header and status in A), kicks, and waits until all are in the engine.</summary>
    private static void OfferReadsIntoB(Setup s)
    {
        for (int i = 0; i < Reads; i++)
        {
            ulong header = s.A.Allocate(16, 16);
            var h = s.A.GetSpan(header, 16);
            h.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(h, VirtioBlk.TypeIn);
            BinaryPrimitives.WriteUInt64LittleEndian(h[8..], (ulong)(i * ReadBytes / 512));
            ulong data = DataBase + (ulong)(i * ReadBytes);
            s.B.GetSpan(data - DataBase, ReadBytes).Fill(0xEE);
            ulong status = s.A.Allocate(1, 1);
            s.A.GetSpan(status, 1)[0] = 0xFF;
            Assert.True(s.Queue.Ring.TryAdd([new DriverBuffer(header, 16, false), new DriverBuffer(data, ReadBytes, true), new DriverBuffer(status, 1, true)], out ushort id));
            s.Offered.Add((id, data, status));
        }
        s.Queue.Ring.Publish();
        s.Queue.Kick.Signal();
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        while (s.Storage.Engines.Count == 0 || s.Engine.InFlight < Reads)
        {
            Assert.True(DateTime.UtcNow < deadline, "the reads never reached the engine");
            Thread.Sleep(1);
        }
        Assert.Equal(0, s.Engine.Touches); // none has completed: the change below races all of them
    }

    private static ushort UsedIndex(Setup s) => s.A.Memory.Read<ushort>(s.Queue.Ring.Placement.Used + 2);

    /// <summary>At the reply: every read completed, was published, and its data is where the guest put its buffer.</summary>
    private static void AssertAllCompletedBeforeTheReply(Setup s, ushort usedAtReply, long touchesAtReply)
    {
        Assert.Equal(Reads, touchesAtReply);
        Assert.Equal(Reads, usedAtReply);
        var expected = new byte[ReadBytes];
        for (int i = 0; i < Reads; i++)
        {
            Assert.Equal(VirtioBlk.StatusOk, s.A.GetSpan(s.Offered[i].Status, 1)[0]);
            for (int j = 0; j < ReadBytes; j++) expected[j] = (byte)((i * ReadBytes + j) * 7 + ((i * ReadBytes + j) >> 12) + 1);
            Assert.Equal(expected, s.B.GetSpan(s.Offered[i].Data - DataBase, ReadBytes).ToArray());
        }
        var ids = new List<ushort>();
        while (s.Queue.Ring.TryGetUsed(out ushort id, out uint length)) { ids.Add(id); Assert.Equal((uint)ReadBytes + 1, length); }
        Assert.Equal(s.Offered.Select(o => o.Id).Order(), ids.Order());
    }

    private static BackendSession EndSession(Setup s)
    {
        s.Ended = true;
        s.Frontend.Dispose();
        s.Server.WaitAllSessionsEnded();
        Assert.True(s.Server.EndedSessions.TryDequeue(out var session));
        Assert.Null(s.Server.Failure);
        return session;
    }

    [Fact]
    public void RemovingARegionRepliesOnlyAfterTheReadsIntoItCompleted()
    {
        using var s = Start(TimeSpan.FromMilliseconds(400));
        OfferReadsIntoB(s);
        s.Frontend.Ok(FrontEndRequest.RemMemReg, new SingleMemoryRegion(Setup.RegionB(s.B)));
        AssertAllCompletedBeforeTheReply(s, UsedIndex(s), s.Engine.Touches);
        s.Frontend.AssertQueueServes(s.Queue); // the ring (in A) carries on
        var session = EndSession(s);
        Assert.True(session.Memory.InFlightWaits >= 1, "the removal never waited for in-flight requests");
        Assert.Equal(0, session.Memory.CancelRequests);
    }

    [Fact]
    public void ReplacingTheTableRepliesOnlyAfterTheReadsIntoTheOldOneCompleted()
    {
        using var s = Start(TimeSpan.FromMilliseconds(400));
        OfferReadsIntoB(s);
        // The same memory again, newly mapped: every old mapping is retired.
        s.Frontend.Ok(FrontEndRequest.SetMemTable, new MemoryTable([Setup.RegionA(s.A), Setup.RegionB(s.B)]), [s.A.Fd.Fd(), s.B.Fd.Fd()]);
        AssertAllCompletedBeforeTheReply(s, UsedIndex(s), s.Engine.Touches);
        s.Frontend.AssertQueueServes(s.Queue);
        Assert.True(EndSession(s).Memory.InFlightWaits >= 1);
    }

    [Fact]
    public void GetVringBaseReturnsOnlyWithNothingInFlight()
    {
        using var s = Start(TimeSpan.FromMilliseconds(400));
        OfferReadsIntoB(s);
        using (var reply = s.Frontend.Call(FrontEndRequest.GetVringBase, new VringState(0, 0)))
        {
            Assert.NotNull(reply);
            long touches = s.Engine.Touches;
            Assert.Equal((uint)Reads, reply.ParsePayload<VringState>().Num);
            AssertAllCompletedBeforeTheReply(s, UsedIndex(s), touches);
        }
        EndSession(s);
    }

    [Fact]
    public void ReadsThatOutlastTheBoundAreCancelledAsIoErrors()
    {
        var options = new BackendOptions { InFlightWait = TimeSpan.FromMilliseconds(100), CancelWait = TimeSpan.FromSeconds(10) };
        using var s = Start(TimeSpan.FromSeconds(60), options);
        OfferReadsIntoB(s);
        s.Frontend.Ok(FrontEndRequest.RemMemReg, new SingleMemoryRegion(Setup.RegionB(s.B)));
        // The reply came after the cancellations were published: each read is an error, none wrote data.
        Assert.Equal(Reads, UsedIndex(s));
        Assert.Equal(0, s.Engine.Touches);
        foreach (var r in s.Offered) Assert.Equal(VirtioBlk.StatusIoError, s.A.GetSpan(r.Status, 1)[0]);
        var session = EndSession(s);
        Assert.Equal(1, session.Memory.CancelRequests);
        Assert.Equal(Reads, session.Queues[0].Counters.CancelledRequests);
        Assert.Equal(0, session.Memory.DeferredRetirements);
    }

    [Fact]
    public void ReadsThatIgnoreTheirCancellationKeepTheirMemoryMappedUntilTheyEnd()
    {
        var options = new BackendOptions { InFlightWait = TimeSpan.FromMilliseconds(50), CancelWait = TimeSpan.FromMilliseconds(50) };
        using var s = Start(TimeSpan.FromMilliseconds(1500), options, honourCancel: false);
        OfferReadsIntoB(s);
        // The control path does not hang: the reply comes past both bounds, with the reads still running.
        s.Frontend.Ok(FrontEndRequest.RemMemReg, new SingleMemoryRegion(Setup.RegionB(s.B)));
        // They land later in memory the backend kept mapped for them (an unmap would have crashed this process).
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        while (UsedIndex(s) < Reads)
        {
            Assert.True(DateTime.UtcNow < deadline, "the reads never completed");
            Thread.Sleep(5);
        }
        AssertAllCompletedBeforeTheReply(s, UsedIndex(s), s.Engine.Touches);
        var session = EndSession(s);
        Assert.Equal(1, session.Memory.DeferredRetirements);
        Assert.Equal(0, session.Memory.DeferredPending);
    }

    [Fact]
    public void ADisconnectEndsTheSessionOnlyAfterTheReadsCompleted()
    {
        using var s = Start(TimeSpan.FromMilliseconds(400));
        OfferReadsIntoB(s);
        EndSession(s);
        Assert.Equal(Reads, s.Engine.Touches);
    }
}
