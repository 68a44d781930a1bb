using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using Region = SharpVhost.VhostUser.Protocol.MemoryRegion;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// A frontend that sends the same fd-carrying message over and over within one connection: the
/// backend must let go of what each message replaces, so its fds and mappings do not grow with the
/// number of messages (the end-of-connection leak check alone would not see this).
/// </summary>
[Collection(FdCountingCollection.Name)]
public class AccumulationTests
{
    private const int Repeats = 300;

    private static void DoesNotAccumulate(Action<HostileFrontend> setup, Action<HostileFrontend, int> repeat) => Attack.Run(h =>
    {
        setup(h);
        repeat(h, 0);
        var before = ResourceCount.Now();
        for (int i = 1; i <= Repeats; i++) repeat(h, i);
        var after = ResourceCount.Now();
        Assert.InRange(after.Fds - before.Fds, -4, 4);
        Assert.InRange(after.MemfdMappings - before.MemfdMappings, -1, 1);
    });

    private static void Prepared(HostileFrontend h) => h.Prepare();

    private static void PreparedAndRunning(HostileFrontend h)
    {
        h.Prepare();
        h.StartQueue(0);
    }

    [Fact]
    public void ErrFdsOfAStoppedQueue()
    {
        using var err = EventFd.Create();
        DoesNotAccumulate(Prepared, (h, _) => h.Ok(FrontEndRequest.SetVringErr, new VringFd(1, false), [err.Fd]));
    }

    [Fact]
    public void ErrFdsOfARunningQueue()
    {
        using var err = EventFd.Create();
        DoesNotAccumulate(PreparedAndRunning, (h, _) => h.Ok(FrontEndRequest.SetVringErr, new VringFd(0, false), [err.Fd]));
    }

    [Fact]
    public void CallAndKickFdsOfARunningQueue()
    {
        using var fd = EventFd.Create(nonBlocking: true);
        DoesNotAccumulate(PreparedAndRunning, (h, i) =>
            h.Ok(i % 2 == 0 ? FrontEndRequest.SetVringCall : FrontEndRequest.SetVringKick, new VringFd(0, false), [fd.Fd]));
    }

    [Fact]
    public void MemoryTables()
    {
        DoesNotAccumulate(Prepared, (h, i) => h.Ok(FrontEndRequest.SetMemTable,
            new MemoryTable([new Region(0, h.Memory!.Size, SharedMemory.VirtualBase, 0)]), [h.Memory.Fd.Fd()]));
    }

    [Fact]
    public void DirtyLogsInflightAreasLogFdsAndBackendChannels()
    {
        using var log = FileDescriptors.CreateMemfd("hostile-log", 4096);
        ulong inflight = SharpVhost.Virtio.SplitInflightTracker.RegionSize(16);
        using var area = FileDescriptors.CreateMemfd("hostile-inflight", (long)inflight * 2);
        var (mine, theirs) = UnixSockets.CreatePair();
        using (mine)
        using (theirs)
            DoesNotAccumulate(Prepared, (h, i) =>
            {
                h.Ok(FrontEndRequest.SetLogBase, new LogDescription(4096, 0), [log.Fd()]);
                h.Ok(FrontEndRequest.SetInflightFd, new InflightDescription(inflight * 2, 0, 2, 16), [area.Fd()]);
                h.Ok(FrontEndRequest.SetLogFd, default, [log.Fd()]);
                h.Ok(FrontEndRequest.SetBackendReqFd, default, [(int)theirs.Handle]);
                using var reply = h.Call(FrontEndRequest.GetInflightFd, new InflightDescription(0, 0, 2, 16));
                Assert.NotNull(reply);
            });
    }

    [Fact]
    public void RegionsAddedAndRemoved()
    {
        DoesNotAccumulate(Prepared, (h, i) =>
        {
            var region = new Region(1ul << 32, 1 << 16, 0x7000_0000_0000, 0);
            h.Ok(FrontEndRequest.AddMemReg, new SingleMemoryRegion(region), [h.Memory!.Fd.Fd()]);
            h.Ok(FrontEndRequest.RemMemReg, new SingleMemoryRegion(region));
        });
    }
}
