using System.Buffers.Binary;
using System.Net.Sockets;
using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;
using Region = SharpVhost.VhostUser.Protocol.MemoryRegion;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// Malformed and out-of-place vhost-user messages over a real socket. Each attack must end in an
/// error reply (NACK under REPLY_ACK) or a clean disconnect; afterwards the same server serves a
/// well-behaved frontend, and no fd or memfd mapping is left behind (see <see cref="Attack"/>).
/// </summary>
[Collection(FdCountingCollection.Name)]
public class MessageAttackTests
{
    private const uint V1 = 1, NeedReply = 8, Reply = 4;

    private static void AssertHungUp(HostileFrontend h) => Assert.Null(h.Receive());

    // ---- framing ----

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(11)]
    public void TruncatedHeaderThenHangUp(int bytes)
    {
        Attack.Run(h =>
        {
            h.Greet();
            if (bytes > 0) h.SendRaw(new byte[] { 2, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0 }.AsSpan(0, bytes));
            h.Socket.Shutdown(SocketShutdown.Send);
            AssertHungUp(h);
        });
    }

    [Fact]
    public void HeaderPromisesMorePayloadThanArrives()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SendRawMessage((uint)FrontEndRequest.SetFeatures, V1 | NeedReply, 8, [1, 2, 3, 4]);
            h.Socket.Shutdown(SocketShutdown.Send);
            AssertHungUp(h);
        });
    }

    [Fact]
    public void PayloadSizesThatDoNotFitTheRequestAreRefusedAndTheStreamStaysInStep()
    {
        Attack.Run(h =>
        {
            h.Greet();
            // Complete messages whose size is wrong for their kind: NACK, then carry on.
            h.SendRawMessage((uint)FrontEndRequest.SetFeatures, V1 | NeedReply, 16, new byte[16]);
            Assert.Equal(Outcome.Nack, h.ReadAck(FrontEndRequest.SetFeatures));
            h.SendRawMessage((uint)FrontEndRequest.SetVringNum, V1 | NeedReply, 4, new byte[4]);
            Assert.Equal(Outcome.Nack, h.ReadAck(FrontEndRequest.SetVringNum));
            h.SendRawMessage((uint)FrontEndRequest.SetVringAddr, V1 | NeedReply, 41, new byte[41]);
            Assert.Equal(Outcome.Nack, h.ReadAck(FrontEndRequest.SetVringAddr));
            h.SendRawMessage((uint)FrontEndRequest.SetOwner, V1 | NeedReply, 8, new byte[8]);
            Assert.Equal(Outcome.Nack, h.ReadAck(FrontEndRequest.SetOwner));
            // A memory table whose count disagrees with its length, and one with no regions.
            var table = new byte[8 + 32];
            BinaryPrimitives.WriteUInt32LittleEndian(table, 2);
            h.SendRawMessage((uint)FrontEndRequest.SetMemTable, V1 | NeedReply, (uint)table.Length, table);
            Assert.Equal(Outcome.Nack, h.ReadAck(FrontEndRequest.SetMemTable));
            h.SendRawMessage((uint)FrontEndRequest.SetMemTable, V1 | NeedReply, 8, new byte[8]);
            Assert.Equal(Outcome.Nack, h.ReadAck(FrontEndRequest.SetMemTable));
            // A config access whose inner size disagrees with the payload.
            var config = new byte[12 + 4];
            BinaryPrimitives.WriteUInt32LittleEndian(config.AsSpan(4), 8);
            h.SendRawMessage((uint)FrontEndRequest.SetConfig, V1 | NeedReply, (uint)config.Length, config);
            Assert.Equal(Outcome.Nack, h.ReadAck(FrontEndRequest.SetConfig));
            Assert.NotEqual(0UL, h.GetU64(FrontEndRequest.GetFeatures));
        });
    }

    [Fact]
    public void AWrongSizeOnARequestThatMustBeAnsweredEndsTheConnection()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SendRawMessage((uint)FrontEndRequest.GetFeatures, V1, 8, new byte[8]);
            AssertHungUp(h);
        });
    }

    [Theory]
    [InlineData(V1, 4097u)]           // larger than any message may be
    [InlineData(V1, 0xFFFF_FFFFu)]
    [InlineData(0u, 0u)]              // version 0
    [InlineData(2u, 0u)]              // version 2
    [InlineData(V1 | 0x10u, 0u)]      // unknown flag
    [InlineData(V1 | Reply, 0u)]      // a reply where a request belongs
    public void UnusableHeadersEndTheConnection(uint flags, uint size)
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SendRawMessage((uint)FrontEndRequest.GetQueueNum, flags, size, []);
            AssertHungUp(h);
        });
    }

    // ---- fds ----

    [Fact]
    public void MissingFdsAreRefused()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            using var memfd = FileDescriptors.CreateMemfd("hostile", 1 << 16);
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetMemTable, new MemoryTable([new Region(0, 1 << 16, 0x10000, 0)])));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetMemTable,
                new MemoryTable([new Region(0, 1 << 16, 0x10000, 0), new Region(1 << 16, 1 << 16, 0x20000, 0)]), [memfd.Fd()]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.AddMemReg, new SingleMemoryRegion(new Region(0, 1 << 16, 0x10000, 0))));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false)));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringCall, new VringFd(0, false)));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringErr, new VringFd(1, false)));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetBackendReqFd));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetLogFd));
            Assert.Equal(2UL, h.GetU64(FrontEndRequest.GetQueueNum));
        });
    }

    [Fact]
    public void ExtraFdsAreRefusedAndClosed()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            using var a = EventFd.Create();
            using var b = EventFd.Create();
            using var memfd = FileDescriptors.CreateMemfd("hostile", 1 << 16);
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringNum, new VringState(0, 16), [a.Fd, b.Fd]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetOwner, default, [a.Fd]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, true), [a.Fd])); // "no fd" yet one came
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringCall, new VringFd(0, false), [a.Fd, b.Fd]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetMemTable, new MemoryTable([new Region(0, 1 << 16, 0x10000, 0)]),
                [memfd.Fd(), memfd.Fd(), memfd.Fd()]));
            // More fds than any message may carry: the kernel truncates, the backend closes what came.
            Span<int> many = [a.Fd, a.Fd, a.Fd, a.Fd, a.Fd, b.Fd, b.Fd, b.Fd, b.Fd, b.Fd, b.Fd, b.Fd];
            var table = new MemoryTable([new Region(0, 1 << 16, 0x10000, 0)]);
            var bytes = new byte[table.WireSize];
            table.Write(bytes);
            h.SendRawMessage((uint)FrontEndRequest.SetMemTable, V1 | NeedReply, (uint)bytes.Length, bytes, many);
            HostileFrontend.Refused(h.ReadAck(FrontEndRequest.SetMemTable));
            Assert.Equal(2UL, h.GetU64(FrontEndRequest.GetQueueNum));
        });
    }

    [Fact]
    public void FdsOfTheWrongKindAreRefused()
    {
        Attack.Run(h =>
        {
            var memory = h.Prepare();
            using var eventFd = EventFd.Create();
            var (mine, theirs) = UnixSockets.CreatePair();
            using (mine)
            using (theirs)
            {
                // Guest memory that is an eventfd or a socket cannot be mapped.
                HostileFrontend.Refused(h.Request(FrontEndRequest.AddMemReg, new SingleMemoryRegion(new Region(1 << 30, 4096, 0x7000_0000, 0)), [eventFd.Fd]));
                HostileFrontend.Refused(h.Request(FrontEndRequest.AddMemReg, new SingleMemoryRegion(new Region(1 << 30, 4096, 0x7000_0000, 0)),
                    [(int)theirs.Handle]));
                // The back-end request channel must be a socket.
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetBackendReqFd, default, [eventFd.Fd]));
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetBackendReqFd, default, [memory.Fd.Fd()]));
            }
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    // ---- memory regions ----

    public static TheoryData<string, ulong, ulong, ulong, ulong> BadRegions() => new()
    {
        { "zero size", 0x100000, 0, 0x7000_0000, 0 },
        { "gpa wraps", ulong.MaxValue - 4095, 8192, 0x7000_0000, 0 },
        { "uva wraps", 0x100000, 8192, ulong.MaxValue - 4095, 0 },
        { "offset wraps", 0x100000, 8192, 0x7000_0000, ulong.MaxValue - 4095 },
        { "past the fd", 0x100000, 1 << 20, 0x7000_0000, 0 },             // the fd has 64 KiB
        { "offset past the fd", 0x100000, 4096, 0x7000_0000, 1 << 16 },
        { "straddles the fd end", 0x100000, 8192, 0x7000_0000, (1 << 16) - 4096 },
        { "overlaps in gpa", 0x1000, 4096, 0x7000_0000, 0 },                // the good table is gpa [0, 1 MiB)
        { "overlaps in uva", 0x100000, 4096, 0x1000_0000_1000, 0 },         // ... and uva [VirtualBase, +1 MiB)
    };

    [Theory]
    [MemberData(nameof(BadRegions))]
    public void BadRegionsAreRefusedAndTheTableStaysAsItWas(string why, ulong gpa, ulong size, ulong uva, ulong offset)
    {
        Attack.Run(h =>
        {
            h.Prepare();
            var q = h.StartQueue(0);
            using var memfd = FileDescriptors.CreateMemfd("hostile", 1 << 16);
            var bad = new Region(gpa, size, uva, offset);
            HostileFrontend.Refused(h.Request(FrontEndRequest.AddMemReg, new SingleMemoryRegion(bad), [memfd.Fd()]));
            // In a whole table, next to a good copy of the current region: the old table must survive.
            var good = new Region(0, h.Memory!.Size, 0x1000_0000_0000, 0);
            if (why is not ("overlaps in gpa" or "overlaps in uva"))
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetMemTable, new MemoryTable([good, bad]), [h.Memory.Fd.Fd(), memfd.Fd()]));
            h.AssertQueueServes(q);
        }, afterwards: _ => Assert.NotNull(why));
    }

    [Fact]
    public void RegionsOverlappingEachOtherInOneTableAreRefused()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            using var memfd = FileDescriptors.CreateMemfd("hostile", 1 << 16);
            int fd = memfd.Fd();
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetMemTable,
                new MemoryTable([new Region(0, 8192, 0x10000, 0), new Region(4096, 8192, 0x40000, 0)]), [fd, fd]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetMemTable,
                new MemoryTable([new Region(0, 8192, 0x10000, 0), new Region(0x40000, 8192, 0x11000, 0)]), [fd, fd]));
            // Touching is not overlapping.
            h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([new Region(0, 8192, 0x10000, 0), new Region(8192, 8192, 0x12000, 8192)]), [fd, fd]);
        });
    }

    [Fact]
    public void NoMoreThan509RegionsAndUnknownRegionsCannotBeRemoved()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            Assert.Equal(509UL, h.GetU64(FrontEndRequest.GetMaxMemSlots));
            const int page = 4096;
            using var memfd = FileDescriptors.CreateMemfd("hostile", 510 * page);
            int fd = memfd.Fd();
            Region At(int i) => new((ulong)i * 2 * page, page, 0x10_0000_0000 + (ulong)i * 2 * page, (ulong)i * page);
            for (int i = 0; i < 509; i++) h.Ok(FrontEndRequest.AddMemReg, new SingleMemoryRegion(At(i)), [fd]);
            HostileFrontend.Refused(h.Request(FrontEndRequest.AddMemReg, new SingleMemoryRegion(At(509)), [fd]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.RemMemReg, new SingleMemoryRegion(At(509))));
            HostileFrontend.Refused(h.Request(FrontEndRequest.RemMemReg, new SingleMemoryRegion(At(3) with { Size = 2 * page })));
            h.Ok(FrontEndRequest.RemMemReg, new SingleMemoryRegion(At(3)), [fd]); // a stray fd on REM is tolerated and closed
            HostileFrontend.Refused(h.Request(FrontEndRequest.RemMemReg, new SingleMemoryRegion(At(3))));
            h.Ok(FrontEndRequest.AddMemReg, new SingleMemoryRegion(At(509)), [fd]);
        });
    }

    // ---- queues ----

    [Fact]
    public void QueueSizesThatAreNotPowersOfTwoOrChangeWhileRunningAreRefused()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            foreach (uint bad in new uint[] { 0, 3, 100, 65536, 1u << 20, uint.MaxValue })
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringNum, new VringState(1, bad)));
            var q = h.StartQueue(0, size: 16);
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringNum, new VringState(0, 32)));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringNum, new VringState(0, 16)));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringBase, new VringState(0, 5)));
            h.AssertQueueServes(q);
            h.AssertQueueServes(q);
        });
    }

    [Fact]
    public void QueueIndicesOutOfRangeAreRefused()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            using var e = EventFd.Create();
            foreach (uint index in new uint[] { 2, 255, 256, uint.MaxValue })
            {
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringNum, new VringState(index, 16)));
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringBase, new VringState(index, 0)));
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringEnable, new VringState(index, 1)));
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringAddr, new VringAddress(index, VringAddressFlags.None, 0x1000_0000_0000, 0x1000_0000_2000, 0x1000_0000_1000, 0)));
            }
            foreach (byte index in new byte[] { 2, 200, 255 })
            {
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(index, false), [e.Fd]));
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringCall, new VringFd(index, false), [e.Fd]));
                HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringErr, new VringFd(index, true)));
            }
            // Reserved bits in a vring fd payload.
            HostileFrontend.Refused(h.RequestU64(FrontEndRequest.SetVringCall, 1u << 9 | 1u << 8));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringEnable, new VringState(0, 2)));
            h.AssertQueueServes(h.StartQueue(1));
        });
    }

    [Fact]
    public void GetVringBaseOfAQueueThatDoesNotExistEndsTheConnection()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            Assert.Null(h.Call(FrontEndRequest.GetVringBase, new VringState(7, 0)));
        });
    }

    [Fact]
    public void MessagesInTheWrongOrderAreRefused()
    {
        Attack.Run(h =>
        {
            h.Greet();
            using var kick = EventFd.Create();
            // Before SET_FEATURES, before a memory table, before the ring is described: no ring may start.
            h.Ok(FrontEndRequest.SetVringNum, new VringState(0, 16));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]));
            h.SetFeatures();
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]));
            // A ring address for a queue whose size was never set.
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringAddr, new VringAddress(1, VringAddressFlags.None, 0x1000_0000_0000, 0x1000_0000_2000, 0x1000_0000_1000, 0)));
            var memory = h.ShareMemory(1 << 20);
            // Size and memory but no address yet.
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, true)));
            // Done properly afterwards, the queue serves.
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    [Fact]
    public void ChangingTheRingLayoutForgetsTheRingDescription()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            h.ShareMemory(1 << 20);
            using var kick = EventFd.Create();
            h.Ok(FrontEndRequest.SetVringNum, new VringState(0, 16));
            h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None, 0x1000_0000_0000, 0x1000_0000_2000, 0x1000_0000_1000, 0));
            // RING_PACKED now: the split ring's size and addresses mean nothing to a packed queue.
            Assert.True(VirtioFeatureBits.Has(h.OfferedFeatures, VirtioFeatureBits.RingPacked));
            h.SetFeatures(HostileFrontend.DriverFeatures | VirtioFeatureBits.Bit(VirtioFeatureBits.RingPacked));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]));
            h.SetFeatures();
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]));
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    [Fact]
    public void AKickBeforeTheMemoryTableDoesNotStartTheRing()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            using var kick = EventFd.Create();
            h.Ok(FrontEndRequest.SetVringNum, new VringState(0, 16));
            h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None, 0x1000_0000_0000, 0x1000_0000_2000, 0x1000_0000_1000, 0));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]));
            h.ShareMemory(1 << 20);
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    // ---- requests and features ----

    [Fact]
    public void UnsupportedRequestsAreRefused()
    {
        Attack.Run(h =>
        {
            h.Greet();
            foreach (uint id in new uint[] { 0, 41, 99, 1000, uint.MaxValue })
            {
                h.SendRawMessage(id, V1 | NeedReply, 8, new byte[8]);
                Assert.Equal(Outcome.Nack, h.ReadAck((FrontEndRequest)id));
            }
            HostileFrontend.Refused(h.Request(FrontEndRequest.IotlbMsg, new byte[IotlbMessage.WireSizeBytes]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringEndian, new VringState(0, 1)));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SendRarp, new U64Payload(0)));
            HostileFrontend.Refused(h.Request(FrontEndRequest.PostcopyListen));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetVringEndian, new VringState(0, 0)));
            Assert.Equal(2UL, h.GetU64(FrontEndRequest.GetQueueNum));
        });
    }

    [Fact]
    public void UnsupportedRequestsThatWantAnAnswerEndTheConnection()
    {
        Attack.Run(h =>
        {
            h.Greet();
            Assert.Null(h.Call(FrontEndRequest.PostcopyAdvise));
        });
    }

    [Fact]
    public void BadInflightAreasAreRefused()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            ulong perQueue = SharpVhost.Virtio.SplitInflightTracker.RegionSize(16);
            using var memfd = FileDescriptors.CreateMemfd("hostile", 1 << 16);
            using var eventFd = EventFd.Create();
            int fd = memfd.Fd();
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(4096, 0, 0, 16), [fd]));      // no queues
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(1 << 16, 0, 3, 16), [fd]));   // more than the device has
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(4096, 0, 1, 24), [fd]));      // not a queue size
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(perQueue - 1, 0, 1, 16), [fd])); // too small
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(4096, 100, 1, 16), [fd]));    // unaligned
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(4096, 1 << 16, 1, 16), [fd])); // past the fd
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(4096, ulong.MaxValue - 4095, 1, 16), [fd])); // wraps
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(4096, 0, 1, 16), [eventFd.Fd]));
            h.Ok(FrontEndRequest.SetInflightFd, new InflightDescription(2 * perQueue, 0, 2, 16), [fd]);
            using (var reply = h.Call(FrontEndRequest.GetInflightFd, new InflightDescription(0, 0, 2, 16)))
            {
                Assert.NotNull(reply);
                Assert.Equal(1, reply!.Fds.Count); // closed with the message
            }
            var q = h.StartQueue(0);
            // Not while a queue runs.
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetInflightFd, new InflightDescription(2 * perQueue, 0, 2, 16), [fd]));
            h.AssertQueueServes(q);
        });
    }

    [Theory]
    [InlineData(0, 16)]
    [InlineData(3, 16)]
    [InlineData(1, 0)]
    [InlineData(1, 65535)]
    public void BadInflightRequestsEndTheConnection(ushort queues, ushort size)
    {
        Attack.Run(h =>
        {
            h.Greet();
            Assert.Null(h.Call(FrontEndRequest.GetInflightFd, new InflightDescription(0, 0, queues, size)));
        });
    }

    [Fact]
    public void FeaturesThatWereNotOfferedAreRefused()
    {
        Attack.Run(h =>
        {
            h.Greet();
            HostileFrontend.Refused(h.RequestU64(FrontEndRequest.SetFeatures, h.OfferedFeatures | 1ul << 63));
            HostileFrontend.Refused(h.RequestU64(FrontEndRequest.SetFeatures, 1ul << 1)); // SIZE_MAX is not offered
            HostileFrontend.Refused(h.RequestU64(FrontEndRequest.SetProtocolFeatures, 1ul << 62));
            HostileFrontend.Refused(h.RequestU64(FrontEndRequest.SetProtocolFeatures, (ulong)VhostUserProtocolFeatures.Pagefault));
            HostileFrontend.Refused(h.RequestU64(FrontEndRequest.SetStatus, 0x1ff));
            h.SetFeatures();
            var memory = h.ShareMemory(1 << 20);
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    [Theory]
    [InlineData(0u, 257)]   // larger than any config access
    [InlineData(250u, 16)]  // runs past the end of config space
    [InlineData(uint.MaxValue, 4)]
    public void ConfigReadsOutOfRangeGetNoData(uint offset, int size)
    {
        Attack.Run(h =>
        {
            h.Greet();
            var payload = new byte[12 + size];
            BinaryPrimitives.WriteUInt32LittleEndian(payload, offset);
            BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), (uint)size);
            using (var reply = h.Call(FrontEndRequest.GetConfig, payload))
            {
                // The protocol's error answer: an empty reply (never data), and the connection goes on.
                Assert.NotNull(reply);
                Assert.Equal(0, reply!.Payload.Length);
            }
            Assert.Equal(2UL, h.GetU64(FrontEndRequest.GetQueueNum));
        });
    }

    [Fact]
    public void ConfigWritesOutsideTheWritableByteAreRefused()
    {
        Attack.Run(h =>
        {
            h.Greet();
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetConfig, new ConfigSpace(0, ConfigSpaceFlags.Writable, new byte[8])));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetConfig, new ConfigSpace(uint.MaxValue, ConfigSpaceFlags.Writable, new byte[1])));
            using var reply = h.Call(FrontEndRequest.GetConfig, new ConfigSpace(0, ConfigSpaceFlags.Writable, new byte[8]));
            Assert.NotNull(reply);
            Assert.Equal(8UL << 20 >> 9, BinaryPrimitives.ReadUInt64LittleEndian(reply!.Payload[12..])); // capacity unchanged
        });
    }

    [Fact]
    public void BadDirtyLogsAreRefused()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            using var memfd = FileDescriptors.CreateMemfd("hostile", 4096);
            using var eventFd = EventFd.Create();
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetLogBase, new LogDescription(0, 0), [memfd.Fd()]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetLogBase, new LogDescription(8192, 0), [memfd.Fd()]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetLogBase, new LogDescription(4096, 1), [memfd.Fd()]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetLogBase, new LogDescription(16, ulong.MaxValue - 8), [memfd.Fd()]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetLogBase, new LogDescription(4096, 0), [eventFd.Fd]));
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetLogBase, new LogDescription(4096, 0)));
            h.AssertQueueServes(h.StartQueue(0));
        });
    }

    [Fact]
    public void AFrontendThatHangsUpWithoutReadingItsRepliesDoesNotStopTheServer()
    {
        Attack.Run(h =>
        {
            // Hundreds of requests in one write, then gone: the backend's replies hit a closed socket.
            var one = new byte[12];
            BinaryPrimitives.WriteUInt32LittleEndian(one, (uint)FrontEndRequest.GetFeatures);
            BinaryPrimitives.WriteUInt32LittleEndian(one.AsSpan(4), V1);
            var burst = new byte[12 * 2000];
            for (int i = 0; i < 2000; i++) one.CopyTo(burst.AsSpan(i * 12));
            h.SendRaw(burst);
            h.Socket.Close();
        });
    }

    [Fact]
    public void AFrontendThatHangsUpWithoutReadingAcknowledgementsDoesNotStopTheServer()
    {
        Attack.Run(h =>
        {
            var one = new byte[12];
            BinaryPrimitives.WriteUInt32LittleEndian(one, (uint)FrontEndRequest.SetOwner);
            BinaryPrimitives.WriteUInt32LittleEndian(one.AsSpan(4), V1 | NeedReply);
            var burst = new byte[12 * 2000];
            for (int i = 0; i < 2000; i++) one.CopyTo(burst.AsSpan(i * 12));
            h.SendRaw(burst);
            h.Socket.Close();
        });
    }
}
