using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;

namespace SharpVhost.Tests.Net;

public class SwitchTests : IDisposable
{
    private readonly ManualClock _clock = new();
    private readonly NetSwitch _switch;
    private readonly NetDevice[] _devices;
    private readonly GuestNet[] _guests;

    public SwitchTests()
    {
        _switch = new NetSwitch(TimeSpan.FromSeconds(60), _clock);
        _devices = [.. new[] { Frames.A, Frames.B, Frames.C }.Select((mac, i) =>
            new NetDevice(_switch.AddPort($"p{i}"), new NetDeviceOptions { Name = $"p{i}", Mac = mac, RxBacklog = 64 }))];
        _guests = [.. _devices.Select(d => new GuestNet(d))];
    }

    public void Dispose()
    {
        foreach (var g in _guests) g.Dispose();
        foreach (var d in _devices) d.Dispose();
    }

    private void Send(int port, MacAddress destination, MacAddress source, int tag = 0)
    {
        _guests[port].Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(destination, source, 64, tag)));
        _guests[port].Tx().RunAll();
        _guests[port].Tx().Reap();
    }

    /// <summary>Tags of the frames each port's guest receives now.</summary>
    private int[] Received(int port)
    {
        _guests[port].Rx().Refill(Math.Min(64, _guests[port].Rx().Driver.FreeCount), 2048);
        _guests[port].Rx().RunAll();
        return [.. _guests[port].Rx().Reap().Select(u => Frames.Tag(u.Data.AsSpan(12)))];
    }

    private SwitchPort Port(int i) => _switch.Ports[i];

    [Fact]
    public void Broadcast_and_unknown_destinations_flood_to_every_other_port()
    {
        Send(0, MacAddress.Broadcast, Frames.A, tag: 1);
        Send(0, Frames.C, Frames.A, tag: 2); // C has not spoken yet: unknown
        Assert.Empty(Received(0));
        Assert.Equal([1, 2], Received(1));
        Assert.Equal([1, 2], Received(2));
        Assert.Equal(2, Port(0).Flooded);
    }

    [Fact]
    public void Learned_addresses_get_unicast_only()
    {
        Send(0, MacAddress.Broadcast, Frames.A, tag: 1); // learns A on port 0
        Send(1, Frames.A, Frames.B, tag: 2);               // to A: port 0 only; learns B on port 1
        Send(0, Frames.B, Frames.A, tag: 3);               // to B: port 1 only
        Assert.Equal([2], Received(0));
        Assert.Equal([1, 3], Received(1));
        Assert.Equal([1], Received(2));
        Assert.Same(Port(0), _switch.Lookup(Frames.A));
        Assert.Same(Port(1), _switch.Lookup(Frames.B));
        Assert.Equal(1, Port(1).Unicast);
        Assert.Equal(1, Port(0).Unicast);
        Assert.Equal(2, _switch.AddressCount);
    }

    [Fact]
    public void Frames_for_an_address_behind_the_sending_port_are_filtered()
    {
        Send(0, MacAddress.Broadcast, Frames.A);
        Send(0, Frames.A, new MacAddress(0x0200_0000_00aa), tag: 5);
        Assert.Equal(1, Port(0).Filtered);
        Assert.Equal([0], Received(1)); // only the first broadcast
    }

    [Fact]
    public void Addresses_age_out_and_are_flooded_to_again()
    {
        Send(1, MacAddress.Broadcast, Frames.B);
        Assert.Same(Port(1), _switch.Lookup(Frames.B));
        _clock.Advance(TimeSpan.FromSeconds(59));
        Assert.Same(Port(1), _switch.Lookup(Frames.B));
        _clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Null(_switch.Lookup(Frames.B));
        Send(0, Frames.B, Frames.A, tag: 7);
        Assert.Equal(1, Port(0).Flooded);
        Assert.Contains(7, Received(2));
        _clock.Advance(TimeSpan.FromSeconds(61));
        Assert.Equal(2, _switch.Sweep());
        Assert.Equal(0, _switch.AddressCount);
    }

    [Fact]
    public void Traffic_keeps_an_address_fresh_and_a_move_is_learned()
    {
        Send(1, MacAddress.Broadcast, Frames.B);
        for (int i = 0; i < 3; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(40));
            Send(1, Frames.A, Frames.B);
        }
        Assert.Same(Port(1), _switch.Lookup(Frames.B));
        Send(2, MacAddress.Broadcast, Frames.B); // B moved (e.g. migrated) to port 2
        Assert.Same(Port(2), _switch.Lookup(Frames.B));
    }

    [Fact]
    public void A_port_whose_guest_never_refills_drops_only_its_own_frames()
    {
        // Port 2 never takes frames; ports 0 and 1 exchange 100 broadcasts.
        var atB = new List<int>();
        for (int i = 0; i < 100; i++)
        {
            Send(0, MacAddress.Broadcast, Frames.A, tag: i);
            if (i % 10 == 9) atB.AddRange(Received(1));
        }
        Assert.Equal(Enumerable.Range(0, 100), atB);
        Assert.Equal(64, _devices[2].Port.BacklogCount);
        Assert.Equal(36, _devices[2].Port.Counters.RxBacklogFull);
        Assert.Equal(0, _devices[1].Port.Counters.RxDrops);
    }

    [Fact]
    public void The_table_is_bounded()
    {
        var sw = new NetSwitch(TimeSpan.FromSeconds(60), _clock, maxAddresses: 8);
        using var d = new NetDevice(sw.AddPort("x"), new NetDeviceOptions());
        var port = sw.Ports[0];
        Span<byte> f = stackalloc byte[64];
        for (int i = 0; i < 20; i++)
        {
            Frames.Ethernet(MacAddress.Broadcast, new MacAddress(0x0200_0000_0000ul + (ulong)i)).CopyTo(f);
            port.Transmit(0, new TxFrame(f));
        }
        Assert.Equal(8, sw.AddressCount);
        Assert.Equal(12, sw.TableFull);
    }
}

public class SwitchMtuTests
{
    [Fact]
    public void Frames_over_the_receiving_ports_mtu_are_dropped_there_only()
    {
        var sw = new NetSwitch();
        using var jumbo = new NetDevice(sw.AddPort("jumbo"), new NetDeviceOptions { Mtu = 9000 });
        using var small = new NetDevice(sw.AddPort("small"), new NetDeviceOptions { Mtu = 1500 });
        using var other = new NetDevice(sw.AddPort("other"), new NetDeviceOptions { Mtu = 9000 });
        using var guest = new GuestNet(jumbo);
        guest.Tx().AddReadable(Frames.WithHeader(Frames.Ethernet(MacAddress.Broadcast, Frames.A, 4000)));
        guest.Tx().RunAll();
        Assert.Equal(1, jumbo.Port.Counters.TxFrames);
        Assert.Equal(1, small.Port.Counters.RxTooLong);
        Assert.Equal(0, small.Port.BacklogCount);
        Assert.Equal(1, other.Port.BacklogCount);
    }
}
