using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// A frontend abusing the vIOMMU path: IOTLB messages where none belong or that make no sense, no
/// channel to send misses on, and misses it never answers. Each ends in an error or a stopped queue,
/// never a hung backend, and leaves no fd or mapping behind (<see cref="Attack"/>).
/// </summary>
[Collection(FdCountingCollection.Name)]
public class IotlbAttackTests
{
    private const ulong AccessPlatform = 1ul << VirtioFeatureBits.AccessPlatform;

    private static Outcome Iotlb(HostileFrontend h, ulong iova, ulong size, ulong uva, IotlbPermission perm, IotlbMessageType type)
        => h.Request(FrontEndRequest.IotlbMsg, new IotlbMessage(iova, size, uva, perm, type));

    [Fact]
    public void IotlbMessagesWithoutAccessPlatformAreRefused()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            Assert.Equal(Outcome.Nack, Iotlb(h, 0, 4096, SharedMemoryBase, IotlbPermission.ReadWrite, IotlbMessageType.Update));
            Assert.Equal(Outcome.Nack, Iotlb(h, 0, 4096, 0, IotlbPermission.None, IotlbMessageType.Invalidate));
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    private const ulong SharedMemoryBase = VhostUser.Frontend.SharedMemory.VirtualBase;

    [Fact]
    public void UpdatesThatMakeNoSenseAndBackendOnlyTypesAreRefused()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures(HostileFrontend.DriverFeatures | AccessPlatform);
            h.ShareMemory(1 << 20);
            Assert.Equal(Outcome.Nack, Iotlb(h, 0x1000, 0, SharedMemoryBase, IotlbPermission.ReadWrite, IotlbMessageType.Update));
            Assert.Equal(Outcome.Nack, Iotlb(h, ulong.MaxValue - 100, 4096, SharedMemoryBase, IotlbPermission.ReadWrite, IotlbMessageType.Update));
            Assert.Equal(Outcome.Nack, Iotlb(h, 0x1000, 4096, ulong.MaxValue - 100, IotlbPermission.ReadWrite, IotlbMessageType.Update));
            Assert.Equal(Outcome.Nack, Iotlb(h, 0x1000, 4096, SharedMemoryBase, IotlbPermission.None, IotlbMessageType.Update));
            Assert.Equal(Outcome.Nack, Iotlb(h, 0x1000, 0, 0, IotlbPermission.ReadOnly, IotlbMessageType.Miss));
            Assert.Equal(Outcome.Nack, Iotlb(h, 0x1000, 0, 0, IotlbPermission.ReadOnly, IotlbMessageType.AccessFail));
            // Sensible ones still work; invalidating what is not there is fine.
            Assert.Equal(Outcome.Ack, Iotlb(h, 0x1000, 4096, SharedMemoryBase, IotlbPermission.ReadWrite, IotlbMessageType.Update));
            Assert.Equal(Outcome.Ack, Iotlb(h, 0, ulong.MaxValue, 0, IotlbPermission.None, IotlbMessageType.Invalidate));
        });
    }

    [Fact]
    public void AMissWithNoChannelToReportItStopsOnlyThatQueue()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures(HostileFrontend.DriverFeatures | AccessPlatform);
            h.ShareMemory(1 << 20);
            var q = h.StartQueue(0); // ring addresses are IOVAs nothing maps, and there is no SET_BACKEND_REQ_FD
            q.Kick.Signal();
            HostileFrontend.AssertBroken(q);
        });
    }

    [Fact]
    public void AFrontendThatNeverAnswersAMissCannotHangTheBackend()
    {
        Attack.Run(h =>
        {
            h.GetU64(FrontEndRequest.GetFeatures);
            h.Ok(FrontEndRequest.SetProtocolFeatures, new U64Payload((ulong)(HostileFrontend.Protocol | VhostUserProtocolFeatures.BackendReq)));
            h.Ok(FrontEndRequest.SetOwner);
            var (ours, theirs) = UnixSockets.CreatePair();
            using var requests = new VhostUserChannel(ours, VhostUserRole.FrontEnd, VhostUserChannelKind.BackendRequests);
            using (theirs) h.Ok(FrontEndRequest.SetBackendReqFd, default, [(int)theirs.Handle]);
            h.Ok(FrontEndRequest.SetFeatures, new U64Payload(HostileFrontend.DriverFeatures | AccessPlatform));
            var memory = h.ShareMemory(1 << 20);
            var q = h.StartQueue(0);
            q.Kick.Signal();
            using (var miss = requests.Receive())
            {
                Assert.NotNull(miss);
                var message = miss.ParsePayload<IotlbMessage>();
                Assert.Equal(IotlbMessageType.Miss, message.Type);
                Assert.Equal(memory.ToFrontendVirtual(q.Ring.Placement.Descriptors), message.Iova);
            }
            // Never answered: stopping the ring must still come back at once.
            using var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0));
            Assert.NotNull(reply);
            Assert.Equal(0u, reply.ParsePayload<VringState>().Num);
        });
    }
}
