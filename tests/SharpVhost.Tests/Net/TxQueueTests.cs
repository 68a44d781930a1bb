using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;

namespace SharpVhost.Tests.Net;

public class TxQueueTests
{
    [Fact]
    public void Sink_counts_frames_and_returns_every_chain()
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device);
        for (int i = 0; i < 100; i++) guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 60 + i)));
        Assert.Equal(100, guest.Tx().RunAll());
        var used = guest.Tx().Reap();
        Assert.Equal(100, used.Count);
        Assert.All(used, u => Assert.Equal(0u, u.Length));
        Assert.Equal(100, device.Port.Counters.TxFrames);
        Assert.Equal(Enumerable.Range(0, 100).Sum(i => 60 + i), device.Port.Counters.TxBytes);
        Assert.Equal(0, device.Port.Counters.TxDrops);
    }

    [Fact]
    public void Bad_frames_are_dropped_counted_and_the_queue_keeps_going()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions { Mtu = 1500 });
        using var guest = new GuestNet(device);
        var tx = guest.Tx();
        tx.AddReadable(new byte[8]);                                                         // shorter than the header
        tx.AddReadable(Frames.WithHeader(new byte[10]));                                     // shorter than an Ethernet header
        tx.AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 1519)));       // MTU 1500 + 18 + 1
        tx.AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A), new VirtioNetHeader(VirtioNet.HeaderNeedsCsum, 0, 0, 0, 14, 16))); // CSUM not negotiated
        tx.AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A), new VirtioNetHeader(1, VirtioNet.GsoTcpV4, 54, 1448, 34, 16))); // TSO not negotiated
        tx.AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A), new VirtioNetHeader(0x80, 0, 0, 0, 0, 0))); // unknown flag
        tx.AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 1518, tag: 42))); // exactly the largest good frame
        tx.RunAll();
        Assert.Equal(7, tx.Reap().Count);
        var c = device.Port.Counters;
        Assert.Equal(4, c.TxBadHeader);
        Assert.Equal(1, c.TxTooShort);
        Assert.Equal(1, c.TxTooLong);
        Assert.Equal(1, c.TxFrames);
        Assert.Null(guest.Tx().Device.BrokenReason);
        // Only the good frame was echoed.
        Assert.Equal(1, device.Port.BacklogCount);
    }

    [Fact]
    public void Header_and_frame_split_across_buffers_arrive_intact()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device);
        var frame = Frames.Ethernet(Frames.B, Frames.A, 300, tag: 5);
        // Header split 4 + 8, frame split across three more buffers.
        guest.Tx().AddReadable(Frames.WithHeader(frame), 4, 8, 1, 100, 199);
        guest.Tx().Run();
        guest.Rx().Refill(1, 2048);
        guest.Rx().Run();
        var used = Assert.Single(guest.Rx().Reap());
        var back = used.Data.AsSpan(VirtioNet.HeaderSize);
        Assert.Equal(300, back.Length);
        Assert.Equal(Frames.A, MacAddress.Read(back));      // swapped
        Assert.Equal(Frames.B, MacAddress.Read(back[6..]));
        Assert.True(back[12..].SequenceEqual(frame.AsSpan(12)));
    }

    [Fact]
    public void Frames_on_every_queue_pair_are_handled()
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions { QueuePairs = 3 });
        using var guest = new GuestNet(device);
        for (int p = 0; p < 3; p++)
            for (int i = 0; i < 10; i++) guest.Tx(p).AddReadable(Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A)));
        for (int p = 0; p < 3; p++) Assert.Equal(10, guest.Tx(p).RunAll());
        Assert.Equal(30, device.Port.Counters.TxFrames);
    }
}
