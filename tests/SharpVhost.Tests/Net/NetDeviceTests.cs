using System.Buffers.Binary;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Net;

public class NetDeviceTests
{
    private static bool Has(ulong features, int bit) => (features & (1ul << bit)) != 0;

    [Fact]
    public void Offers_version1_mergeable_buffers_mac_status_and_config()
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions { Mac = Frames.A, QueuePairs = 1 });
        Assert.True(Has(device.Features, VirtioFeatureBits.Version1));
        Assert.True(Has(device.Features, VirtioNet.FeatureMrgRxbuf));
        Assert.True(Has(device.Features, VirtioNet.FeatureMac));
        Assert.True(Has(device.Features, VirtioNet.FeatureStatus));
        Assert.False(Has(device.Features, VirtioNet.FeatureMq));
        Assert.False(Has(device.Features, VirtioNet.FeatureCsum)); // a sink cannot finish checksums
        Assert.Equal(2, device.QueueCount);
        Assert.Equal(Frames.A, MacAddress.Read(device.Config[NetConfig.MacOffset..]));
        Assert.Equal(VirtioNet.StatusLinkUp, BinaryPrimitives.ReadUInt16LittleEndian(device.Config[NetConfig.StatusOffset..]));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(device.Config[NetConfig.MaxQueuePairsOffset..]));
        Assert.True(Has(device.ExtraProtocolFeatures, VirtioNet.ProtocolMq));
        Assert.True(Has(device.ExtraProtocolFeatures, VirtioNet.ProtocolMtu));
        Assert.False(device.WriteConfig(0, new byte[6]));
    }

    [Fact]
    public void Several_queue_pairs_offer_mq_and_twice_as_many_queues()
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions { QueuePairs = 4, Mtu = 9000, OfferMtu = true });
        Assert.True(Has(device.Features, VirtioNet.FeatureMq));
        Assert.True(Has(device.Features, VirtioNet.FeatureMtu));
        Assert.Equal(8, device.QueueCount);
        Assert.Equal(4, BinaryPrimitives.ReadUInt16LittleEndian(device.Config[NetConfig.MaxQueuePairsOffset..]));
        Assert.Equal(9000, BinaryPrimitives.ReadUInt16LittleEndian(device.Config[NetConfig.MtuOffset..]));
    }

    [Fact]
    public void Net_set_mtu_is_honoured_within_the_backlog_slots()
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions { Mtu = 1500 });
        Assert.True(device.SetMtu(1400));
        Assert.Equal(1400, device.Port.Mtu);
        Assert.False(device.SetMtu(9000));
        Assert.False(device.SetMtu(10));
        Assert.Equal(1400, device.Port.Mtu);
    }

    [Fact]
    public void Header_is_ten_bytes_without_version1_or_mergeable_buffers()
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device, features: 1ul << VirtioNet.FeatureMac);
        Assert.Equal(VirtioNet.LegacyHeaderSize, device.Port.HeaderSize);
        var frame = Frames.Ethernet(Frames.B, Frames.A, 100, tag: 7);
        guest.Tx().AddReadable(Frames.WithHeader(frame, headerSize: 10));
        guest.Tx().Run();
        guest.Rx().Refill(1, 2048);
        guest.Rx().Run();
        var used = Assert.Single(guest.Rx().Reap());
        Assert.Equal(10u + 100u, used.Length);
        Assert.Equal(Frames.B, MacAddress.Read(used.Data.AsSpan(10 + 6)));
        Assert.Equal(7, Frames.Tag(used.Data.AsSpan(10)));
    }

    [Fact]
    public void Send_rarp_announces_the_address_to_the_other_ports()
    {
        var sw = new NetSwitch();
        using var a = new NetDevice(sw.AddPort("a"), new NetDeviceOptions { Mac = Frames.A });
        using var b = new NetDevice(sw.AddPort("b"), new NetDeviceOptions { Mac = Frames.B });
        a.SendRarp(Frames.A);
        Assert.True(b.Port.Backlog(0).TryPeek(out _, out var frame));
        Assert.Equal(MacAddress.Broadcast, MacAddress.Read(frame));
        Assert.Equal(RarpFrame.EtherType, BinaryPrimitives.ReadUInt16BigEndian(frame[12..]));
        Assert.Same(sw.Ports[0], sw.Lookup(Frames.A));
    }
}
