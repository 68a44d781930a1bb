using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.Tests.Backend;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// The backend's side of the device IOTLB against a frontend that plays QEMU with a virtual IOMMU:
/// ACCESS_PLATFORM, a back-end request channel for misses, IOTLB updates as answers. Found with a
/// real guest behind intel-iommu (Integration.Tests Block/IommuGuestTests).
/// </summary>
public sealed class IotlbMissTests
{
    private const ulong IommuFeatures = HostileFrontend.DriverFeatures | (1ul << VirtioFeatureBits.AccessPlatform);

    /// <summary>
    /// SeaBIOS drives the disk first with identity translations, then the guest kernel turns its IOMMU
    /// on and restarts the device; QEMU never invalidates the firmware's entries. A restart (SET_FEATURES
    /// with no ring running) must forget them: the restarted ring misses instead of using them.
    /// </summary>
    [Fact]
    public void A_device_restart_forgets_the_previous_drivers_translations()
    {
        using var server = TestServer.Ram();
        using var h = HostileFrontend.Connect(server);
        var memory = h.Prepare(features: IommuFeatures, extraProtocol: VhostUserProtocolFeatures.BackendReq);
        using var requests = h.OpenRequestChannel();
        MapEverything(h, memory);
        var q = h.StartQueue(0);
        h.AssertQueueServes(q);

        using (var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0))) Assert.NotNull(reply); // the ring stops
        h.SetFeatures(IommuFeatures); // the device starts again, for a new driver
        var again = h.StartQueue(0);
        ushort head = PostGetId(h, again, out _);

        var miss = NextMiss(requests.Socket, requests.Channel, TestServer.Timeout);
        Assert.True(miss is not null, "the restarted ring was served through the previous driver's translations: no IOTLB miss");
        MapEverything(h, memory); // answer as QEMU would
        Assert.Equal(head, HostileFrontend.WaitUsed(again).Id);
    }

    /// <summary>
    /// A worker stuck on a miss wakes at every memory change (other pages' updates and invalidations)
    /// and stops at the same miss again: it must not ask again each time. Duplicates that QEMU answered
    /// after the guest had unmapped the page made the vIOMMU report DMAR faults to the guest.
    /// </summary>
    [Fact]
    public void A_miss_is_asked_once_while_other_translations_change()
    {
        using var server = TestServer.Ram();
        using var h = HostileFrontend.Connect(server);
        var memory = h.Prepare(features: IommuFeatures, extraProtocol: VhostUserProtocolFeatures.BackendReq);
        using var requests = h.OpenRequestChannel();
        // The rings (at frontend virtual addresses here) are mapped, the buffers (at guest physical ones) not yet.
        h.Ok(FrontEndRequest.IotlbMsg, Update(SharedMemory.VirtualBase, memory.Size));
        var q = h.StartQueue(0);
        ushort head = PostGetId(h, q, out ulong header);

        var first = NextMiss(requests.Socket, requests.Channel, TestServer.Timeout);
        Assert.True(first is not null, "no IOTLB miss for an unmapped buffer");
        Assert.Equal(header, first.Value.Iova);

        var watch = Stopwatch.StartNew();
        for (ulong i = 0; i < 10; i++) // unrelated pages come and go
        {
            h.Ok(FrontEndRequest.IotlbMsg, Update((1ul << 40) + i * 4096, 4096));
            h.Ok(FrontEndRequest.IotlbMsg, new IotlbMessage((1ul << 40) + i * 4096, 4096, 0, IotlbPermission.None, IotlbMessageType.Invalidate));
        }
        Thread.Sleep(200);
        int repeats = 0;
        while (NextMiss(requests.Socket, requests.Channel, TimeSpan.FromMilliseconds(100)) is { } again)
        {
            Assert.Equal(first, again);
            repeats++;
        }
        // Asked again only once a second while nothing answers (a frontend may drop a request).
        long allowed = (long)watch.Elapsed.TotalSeconds + 1;
        Assert.True(repeats <= allowed, $"the same miss was sent {repeats} more times in {watch.Elapsed.TotalMilliseconds:0} ms (20 memory changes)");

        h.Ok(FrontEndRequest.IotlbMsg, Update(0, memory.Size)); // the answer
        Assert.Equal(head, HostileFrontend.WaitUsed(q).Id);
    }

    private static IotlbMessage Update(ulong iova, ulong size) =>
        new(iova, size, SharedMemory.VirtualBase, IotlbPermission.ReadWrite, IotlbMessageType.Update);

    // Ring addresses here are frontend virtual addresses, descriptors hold guest physical ones:
    // both ranges translate to the shared memory.
    private static void MapEverything(HostileFrontend h, SharedMemory memory)
    {
        h.Ok(FrontEndRequest.IotlbMsg, Update(0, memory.Size));
        h.Ok(FrontEndRequest.IotlbMsg, Update(SharedMemory.VirtualBase, memory.Size));
    }

    // A GET_ID request, posted and kicked but not waited for.
    private static ushort PostGetId(HostileFrontend h, HostileQueue q, out ulong header)
    {
        var memory = h.Memory!;
        header = memory.Allocate(64, 64);
        var span = memory.GetSpan(header, 64);
        span.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, VirtioBlk.TypeGetId);
        Assert.True(q.Ring.TryAdd([new DriverBuffer(header, 16, false), new DriverBuffer(header + 16, 20, true), new DriverBuffer(header + 36, 1, true)], out ushort head));
        q.Ring.Publish();
        q.Kick.Signal();
        return head;
    }

    // The next IOTLB miss on the back-end request channel, or null if none comes within the timeout.
    private static IotlbMiss? NextMiss(Socket socket, VhostUserChannel channel, TimeSpan timeout)
    {
        if (!socket.Poll(timeout, SelectMode.SelectRead)) return null;
        using var message = channel.Receive() ?? throw new Xunit.Sdk.XunitException("the backend closed its request channel");
        Assert.Equal(BackEndRequest.IotlbMsg, message.BackEndRequest);
        var miss = message.ParsePayload<IotlbMessage>();
        Assert.Equal(IotlbMessageType.Miss, miss.Type);
        return new IotlbMiss(miss.Iova, miss.Permission == IotlbPermission.WriteOnly);
    }
}
