using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;
using Region = SharpVhost.VhostUser.Protocol.MemoryRegion;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// A frontend that pulls things out from under running queues: memory, ring addresses, the device
/// itself, and doorbells that are not eventfds. Nothing may fault (an access to an unmapped region
/// would kill the test process), the affected queue stops or carries on, the rest keeps working.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class LiveChangeAttackTests
{
    private static Region WholeRegion(SharedMemory m) => new(0, m.Size, SharedMemory.VirtualBase, 0);

    [Fact]
    public void RemovingTheRegionUnderARunningRingStopsItAndPuttingItBackLetsItRestart()
    {
        Attack.Run(h =>
        {
            var memory = h.Prepare();
            var q = h.StartQueue(0);
            h.AssertQueueServes(q);
            // Keep the worker busy binding and re-binding while the region goes.
            h.Ok(FrontEndRequest.RemMemReg, new SingleMemoryRegion(WholeRegion(memory)));
            q.Kick.Signal();
            HostileFrontend.AssertBroken(q);
            h.Ok(FrontEndRequest.AddMemReg, new SingleMemoryRegion(WholeRegion(memory)), [memory.Fd.Fd()]);
            using (var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0))) Assert.NotNull(reply);
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    [Fact]
    public void ReplacingTheTableWithOneThatStillHoldsTheRingsKeepsThemRunning()
    {
        Attack.Run(h =>
        {
            var memory = h.Prepare();
            var q0 = h.StartQueue(0);
            var q1 = h.StartQueue(1);
            for (int i = 0; i < 3; i++)
            {
                // The same memory again, then split in two adjacent regions: both still cover every ring.
                h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([WholeRegion(memory)]), [memory.Fd.Fd()]);
                h.AssertQueueServes(q0);
                ulong half = memory.Size / 2;
                h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([new Region(0, half, SharedMemory.VirtualBase, 0),
                    new Region(half, half, SharedMemory.VirtualBase + half, half)]), [memory.Fd.Fd(), memory.Fd.Fd()]);
                h.AssertQueueServes(q1);
            }
        });
    }

    [Fact]
    public void MovingARunningRingOutOfMemoryStopsOnlyThatRing()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q0 = h.StartQueue(0);
            var q1 = h.StartQueue(1);
            h.AssertQueueServes(q0);
            h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None, 0x5555_0000_0000, 0x5555_0000_2000, 0x5555_0000_1000, 0));
            q0.Kick.Signal();
            HostileFrontend.AssertBroken(q0);
            h.AssertQueueServes(q1);
        });
    }

    [Theory]
    [InlineData(FrontEndRequest.ResetDevice)]
    [InlineData(FrontEndRequest.ResetOwner)]
    [InlineData(FrontEndRequest.SetStatus)]
    public void ResettingTheDeviceUnderRunningQueuesThenStartingAgain(FrontEndRequest reset)
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0);
            h.StartQueue(1);
            h.AssertQueueServes(q);
            if (reset == FrontEndRequest.SetStatus) h.Ok(reset, new U64Payload(0));
            else h.Ok(reset);
            // The old rings are gone: a kick on the old fd reaches nobody, and a fresh setup serves.
            h.AssertQueueServes(h.StartQueue(0));
            h.AssertQueueServes(h.StartQueue(1));
        });
    }

    [Fact]
    public void DoorbellsThatAreNotEventfdsStopTheQueueNotTheBackend()
    {
        Attack.Run(h =>
        {
            var memory = h.Prepare();
            var good = h.StartQueue(1);
            // A kick "eventfd" that is an empty memfd: always readable, never an 8-byte counter.
            var q = h.StartQueue(0);
            using var bogusKick = FileDescriptors.CreateMemfd("hostile-kick", 0);
            h.Ok(FrontEndRequest.SetVringKick, new VringFd(0, false), [bogusKick.Fd()]);
            HostileFrontend.AssertBroken(q);
            h.AssertQueueServes(good);
        });
    }

    [Fact]
    public void ACallFdThatCannotBeWrittenStopsTheQueueNotTheBackend()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var good = h.StartQueue(1);
            var q = h.StartQueue(0);
            // A read-only fd where the interrupt eventfd belongs: the first interrupt fails.
            string path = Path.GetTempFileName();
            try
            {
                using (var ro = File.OpenHandle(path, FileMode.Open, FileAccess.Read))
                    h.Ok(FrontEndRequest.SetVringCall, new VringFd(0, false), [ro.Fd()]);
                ulong header = h.Memory!.Allocate(64, 64);
                Assert.True(q.Ring.TryAdd([new DriverBuffer(header, 16, false), new DriverBuffer(header + 16, 1, true)], out _));
                q.Ring.Publish();
                q.Kick.Signal();
                HostileFrontend.AssertBroken(q);
                h.AssertQueueServes(good);
            }
            finally { File.Delete(path); }
        });
    }
}
