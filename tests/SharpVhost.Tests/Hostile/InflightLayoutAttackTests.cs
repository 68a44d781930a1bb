using System.Buffers.Binary;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.Tests.Backend;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// The ring layout, the inflight area's size and the tracker laid over it must agree. A frontend that
/// runs a packed ring, then sets features without RING_PACKED, stops the ring, asks for an inflight area
/// (sized for split rings) and restarts the ring had a packed tracker clear memory far past that area's
/// mapping (SIGSEGV, or guest pages zeroed). A layout change while a ring runs is refused; an area made
/// for one layout is never used by the other.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class InflightLayoutAttackTests
{
    public static TheoryData<MetadataAccess> Accessors() => new() { MetadataAccess.Direct, MetadataAccess.Checked };

    // Large enough that a packed tracker over a split-sized area runs pages past the mapping.
    private const int Size = 1024;
    private const ushort Avail = PackedRingLayout.FlagAvail, Write = 2;

    private sealed record RunningPackedQueue(int Index, PackedDriverQueue Ring, EventFd Kick, EventFd Call);

    private static ulong Packed => HostileFrontend.DriverFeatures | VirtioFeatureBits.Bit(VirtioFeatureBits.RingPacked);

    private static RunningPackedQueue StartPacked(HostileFrontend h, int index, PackedRingPlacement p)
    {
        var memory = h.Memory!;
        var ring = new PackedDriverQueue(memory.Memory, p, Size, eventIndex: false);
        var q = new RunningPackedQueue(index, ring, h.Own(EventFd.Create(nonBlocking: true)), h.Own(EventFd.Create(nonBlocking: true)));
        h.Ok(FrontEndRequest.SetVringNum, new VringState((uint)index, Size));
        h.Ok(FrontEndRequest.SetVringBase, new VringState((uint)index, 0x8000_8000));
        h.Ok(FrontEndRequest.SetVringAddr, new VringAddress((uint)index, VringAddressFlags.None,
            memory.ToFrontendVirtual(p.Descriptors), memory.ToFrontendVirtual(p.DeviceArea), memory.ToFrontendVirtual(p.DriverArea), 0));
        h.Ok(FrontEndRequest.SetVringCall, new VringFd((byte)index, false), [q.Call.Fd]);
        Restart(h, q);
        return q;
    }

    private static void Restart(HostileFrontend h, RunningPackedQueue q)
    {
        h.Ok(FrontEndRequest.SetVringKick, new VringFd((byte)q.Index, false), [q.Kick.Fd]);
        h.Ok(FrontEndRequest.SetVringEnable, new VringState((uint)q.Index, 1));
    }

    private static void AssertServes(HostileFrontend h, RunningPackedQueue q) => PackedRingAttackTests.AssertServes(h, q.Index, q.Ring, q.Kick);

    private static ulong InflightSize(HostileFrontend h, ushort queues)
    {
        using var reply = h.Call(FrontEndRequest.GetInflightFd, new InflightDescription(0, 0, queues, Size));
        Assert.NotNull(reply);
        return reply!.ParsePayload<InflightDescription>().MmapSize;
    }

    [Theory, MemberData(nameof(Accessors))]
    public void Dropping_ring_packed_under_a_running_packed_ring_is_refused(MetadataAccess access)
    {
        Attack.Run(h =>
        {
            h.Greet(VhostUserProtocolFeatures.InflightShmFd);
            h.SetFeatures(Packed);
            h.ShareMemory(1 << 20);
            var p = PackedRingPlacement.At(h.Memory!.Allocate(PackedRingPlacement.At(0, Size).End + 16, 4096), Size);
            Assert.Equal(2 * PackedInflightTracker.RegionSize(Size), InflightSize(h, 2));
            var q = StartPacked(h, 1, p);
            AssertServes(h, q);

            // The attack: features without RING_PACKED while the ring runs, stop, a new area, restart.
            HostileFrontend.Refused(h.RequestU64(FrontEndRequest.SetFeatures, h.OfferedFeatures & HostileFrontend.DriverFeatures));
            using (var stopped = h.Call(FrontEndRequest.GetVringBase, new VringState(1, 0))) Assert.NotNull(stopped);
            Assert.Equal(2 * PackedInflightTracker.RegionSize(Size), InflightSize(h, 2)); // still sized for packed rings
            Restart(h, q);
            AssertServes(h, q);
        }, options: new BackendOptions { Metadata = access });
    }

    [Theory, MemberData(nameof(Accessors))]
    public void An_area_made_for_packed_rings_is_not_laid_under_a_split_ring(MetadataAccess access)
    {
        Attack.Run(h =>
        {
            h.Greet(VhostUserProtocolFeatures.InflightShmFd);
            h.SetFeatures(Packed);
            h.ShareMemory(1 << 20);
            Assert.Equal(2 * PackedInflightTracker.RegionSize(Size), InflightSize(h, 2));
            // No ring runs: the layout may change, and the queues are rebuilt for it. The area is not.
            h.SetFeatures();
            var q = h.StartQueue(1, Size);
            h.AssertQueueServes(q);
            // Asked again, the area is made for the layout that now runs... only once no ring runs.
            using (var stopped = h.Call(FrontEndRequest.GetVringBase, new VringState(1, 0))) Assert.NotNull(stopped);
            Assert.Equal(2 * SplitInflightTracker.RegionSize(Size), InflightSize(h, 2));
        }, options: new BackendOptions { Metadata = access });
    }
}
