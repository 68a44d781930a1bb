using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Net;

public class RxQueueTests
{
    private static ulong WithoutMergeable(NetDevice d) => d.Features & ~(1ul << VirtioFeatureBits.LogAll) & ~(1ul << VirtioNet.FeatureMrgRxbuf);

    [Fact]
    public void Echo_returns_each_frame_with_addresses_swapped_and_one_buffer()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device);
        guest.Rx().Refill(32, 2048);
        for (int i = 0; i < 20; i++) guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 64 + i, tag: i)));
        guest.Tx().RunAll();
        Assert.Equal(20, guest.Rx().RunAll());
        var used = guest.Rx().Reap();
        Assert.Equal(20, used.Count);
        for (int i = 0; i < 20; i++)
        {
            var header = VirtioNetHeader.Read(used[i].Data, VirtioNet.HeaderSize);
            Assert.Equal(1, header.NumBuffers);
            Assert.Equal((uint)(12 + 64 + i), used[i].Length);
            var frame = used[i].Data.AsSpan(12);
            Assert.Equal(Frames.A, MacAddress.Read(frame));
            Assert.Equal(i, Frames.Tag(frame));
        }
        Assert.Equal(20, device.Port.Counters.RxFrames);
    }

    [Fact]
    public void Mergeable_buffers_carry_a_large_frame_across_several_chains()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions { Mtu = 9000 });
        using var guest = new GuestNet(device);
        var frame = Frames.Ethernet(Frames.B, Frames.A, 5000, tag: 3);
        guest.Tx().AddReadable(Frames.WithHeader(frame));
        guest.Tx().Run();
        guest.Rx().Refill(8, 1024);
        Assert.Equal(5, guest.Rx().Run()); // 12 + 5000 bytes in 1024-byte buffers
        var used = guest.Rx().Reap();
        Assert.Equal(5, used.Count);
        Assert.Equal(5, VirtioNetHeader.Read(used[0].Data, 12).NumBuffers);
        Assert.Equal(new uint[] { 1024, 1024, 1024, 1024, 5012 - 4096 }, used.Select(u => u.Length));
        var joined = used.SelectMany(u => u.Data).Skip(12).ToArray();
        Assert.Equal(Frames.B, MacAddress.Read(joined.AsSpan(6)));
        Assert.True(joined.AsSpan(12).SequenceEqual(frame.AsSpan(12)));
    }

    [Fact]
    public void A_frame_waits_while_there_are_too_few_mergeable_buffers()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions { Mtu = 9000 });
        using var guest = new GuestNet(device);
        guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 3000)));
        guest.Tx().Run();
        guest.Rx().Refill(2, 1024);
        Assert.Equal(0, guest.Rx().Run());
        Assert.Empty(guest.Rx().Reap());
        Assert.Equal(1, device.Port.BacklogCount);
        guest.Rx().Refill(2, 1024);
        Assert.Equal(3, guest.Rx().Run());
        Assert.Equal(3, guest.Rx().Reap().Count);
        Assert.Equal(0, device.Port.BacklogCount);
        Assert.Equal(0, device.Port.Counters.RxDrops);
    }

    [Fact]
    public void Without_mergeable_buffers_a_too_small_buffer_drops_the_frame_and_is_kept()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device, features: 0);
        device.OnFeaturesNegotiated(WithoutMergeable(device));
        Assert.False(device.Port.MergeableRxBuffers);
        guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 1000, tag: 1)));
        guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 100, tag: 2)));
        guest.Tx().RunAll();
        guest.Rx().Refill(1, 512);
        Assert.Equal(1, guest.Rx().Run());
        var used = Assert.Single(guest.Rx().Reap());
        Assert.Equal(2, Frames.Tag(used.Data.AsSpan(12)));
        Assert.Equal(1, VirtioNetHeader.Read(used.Data, 12).NumBuffers);
        Assert.Equal(1, device.Port.Counters.RxBufferTooSmall);
    }

    [Fact]
    public void Buffers_too_small_for_a_header_are_returned_empty()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device);
        guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 100, tag: 9)));
        guest.Tx().Run();
        guest.Rx().Refill(1, 4);
        guest.Rx().Refill(1, 2048);
        guest.Rx().RunAll();
        var used = guest.Rx().Reap();
        Assert.Equal(2, used.Count);
        Assert.Equal(0u, used[0].Length);
        Assert.Equal(9, Frames.Tag(used[1].Data.AsSpan(12)));
        Assert.Equal(1, device.Port.Counters.RxBadBuffer);
    }

    [Fact]
    public void A_guest_that_never_refills_loses_frames_to_a_full_backlog_only()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions { RxBacklog = 16 });
        using var guest = new GuestNet(device);
        for (int round = 0; round < 4; round++)
        {
            for (int i = 0; i < 10; i++) guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 64, tag: round * 10 + i)));
            guest.Tx().RunAll();
            guest.Tx().Reap();
            Assert.Equal(0, guest.Rx().Run());
        }
        Assert.Equal(40, device.Port.Counters.TxFrames);
        Assert.Equal(24, device.Port.Counters.RxBacklogFull);
        // The guest comes back: the 16 oldest frames arrive, in order.
        guest.Rx().Refill(64, 2048);
        Assert.Equal(16, guest.Rx().RunAll());
        Assert.Equal(Enumerable.Range(0, 16), guest.Rx().Reap().Select(u => Frames.Tag(u.Data.AsSpan(12))));
    }

    [Fact]
    public void Source_fills_every_buffer_and_stops_at_its_count()
    {
        using var device = new NetDevice(new SourceEndpoint(128, count: 100), new NetDeviceOptions());
        using var guest = new GuestNet(device);
        guest.Rx().Refill(64, 2048);
        Assert.Equal(64, guest.Rx().RunAll());
        var used = guest.Rx().Reap();
        Assert.Equal(64, used.Count);
        Assert.All(used, u => Assert.Equal(12u + 128u, u.Length));
        var sequence = used.Select(u => System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(u.Data.AsSpan(12 + 16))).ToArray();
        Assert.Equal(Enumerable.Range(0, 64).Select(i => (long)i), sequence);
        guest.Rx().Refill(64, 2048);
        Assert.Equal(36, guest.Rx().RunAll());
        Assert.Equal(100, device.Port.Counters.RxFrames);
    }

    [Theory]
    [InlineData(MetadataAccess.Direct, true)]
    [InlineData(MetadataAccess.Checked, true)]
    [InlineData(MetadataAccess.Checked, false)]
    public void Echo_works_with_both_accessors_and_notification_styles(MetadataAccess access, bool eventIndex)
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device, queueSize: 64, eventIndex: eventIndex, access: access);
        int received = 0;
        for (int round = 0; round < 20; round++)
        {
            guest.Rx().Refill(10, 1536);
            for (int i = 0; i < 10; i++) guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 60 + i, tag: round * 10 + i)));
            guest.Tx().RunAll();
            guest.Tx().Reap();
            guest.Rx().RunAll();
            foreach (var u in guest.Rx().Reap()) Assert.Equal(received++, Frames.Tag(u.Data.AsSpan(12)));
        }
        Assert.Equal(200, received);
        Assert.Equal(access == MetadataAccess.Direct, guest.Rx().Device.UsingDirectAccess);
    }

    [Fact]
    public void Conversations_are_spread_over_the_started_receive_queues()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions { QueuePairs = 2 });
        using var guest = new GuestNet(device);
        for (int i = 0; i < 64; i++)
        {
            var src = new MacAddress(0x0200_0000_1000ul + (ulong)i);
            guest.Tx(i % 2).AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, src, 64, tag: i)));
        }
        guest.Tx(0).RunAll();
        guest.Tx(1).RunAll();
        guest.Rx(0).Refill(64, 2048);
        guest.Rx(1).Refill(64, 2048);
        int a = guest.Rx(0).RunAll(), b = guest.Rx(1).RunAll();
        Assert.Equal(64, a + b);
        Assert.True(a > 0 && b > 0, $"split {a}/{b}");
    }
}
