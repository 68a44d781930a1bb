using SharpVhost.Devices.Block;
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
            h.Greet(VhostUserProtocolFeatures.BackendReq);
            using var requests = h.OpenRequestChannel();
            h.SetFeatures(HostileFrontend.DriverFeatures | AccessPlatform);
            var memory = h.ShareMemory(1 << 20);
            var q = h.StartQueue(0);
            q.Kick.Signal();
            using (var miss = requests.Channel.Receive())
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

    [Fact]
    public void AFrontendThatStopsReadingItsRequestChannelLosesTheQueueNotTheBackend()
    {
        Attack.Run(h =>
        {
            h.Greet(VhostUserProtocolFeatures.BackendReq);
            using var requests = h.OpenRequestChannel(sendBuffer: 1); // the kernel's minimum: a handful of unread misses fill it
            var unread = requests.Socket;
            h.SetFeatures(HostileFrontend.DriverFeatures | AccessPlatform);
            var memory = h.ShareMemory(1 << 20);
            Assert.Equal(Outcome.Ack, Iotlb(h, SharedMemoryBase, memory.Size, SharedMemoryBase, IotlbPermission.ReadWrite, IotlbMessageType.Update)); // the rings
            var q = h.StartQueue(0);

            // Each request's buffers sit on a page of their own that misses. We answer every miss on the
            // main channel (we can see one arrive without reading it) but never read the request channel.
            int served = 0;
            for (; served < 200; served++)
            {
                int pending = unread.Available;
                ulong page = memory.Allocate(4096, 4096);
                var header = memory.GetSpan(page, 64);
                header.Clear();
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(header, VirtioBlk.TypeGetId);
                Assert.True(q.Ring.TryAdd([new DriverBuffer(page, 16, false), new DriverBuffer(page + 16, 20, true), new DriverBuffer(page + 36, 1, true)], out _));
                q.Ring.Publish();
                q.Kick.Signal();
                if (!SpinWait.SpinUntil(() => unread.Available > pending, TimeSpan.FromSeconds(3))) break; // the miss could not be sent
                Assert.Equal(Outcome.Ack, Iotlb(h, page, 4096, SharedMemoryBase + page, IotlbPermission.ReadWrite, IotlbMessageType.Update));
                HostileFrontend.WaitUsed(q);
            }
            Assert.True(served is > 0 and < 200, $"{served} requests served before the request channel filled up");
            HostileFrontend.AssertBroken(q); // the channel was dropped, so the queue has nobody to ask
            using var reply = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0)); // and stopping it does not hang
            Assert.NotNull(reply);
        });
    }
}
