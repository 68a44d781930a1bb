using System.Buffers.Binary;
using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.VhostUser.Backend;
using static SharpVhost.Integration.Tests.Support.HostNetwork;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>
/// The TAP endpoint reaches the host: our frontend is the "guest" on a port whose endpoint is a new
/// TAP interface with a host address; the host kernel answers its ARP request and its ping.
/// Needs /dev/net/tun and CAP_NET_ADMIN (the tests run as root); fails without them.
/// </summary>
public sealed class TapTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharpvhost-tap-").FullName;
    private static readonly MacAddress GuestMac = MacAddress.Parse("02:00:00:00:51:0a");

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Fact]
    public void A_guest_on_a_tap_port_gets_arp_and_ping_answers_from_the_host()
    {
        string name = "svtap" + Random.Shared.Next(0x1000, 0xffff).ToString("x");
        byte subnet = (byte)Random.Shared.Next(1, 250);
        byte[] hostIp = [10, 231, subnet, 1], guestIp = [10, 231, subnet, 2];
        string socket = Path.Combine(_dir, "net.sock");
        using var device = new NetDevice(new TapEndpoint(name), new NetDeviceOptions { Mac = GuestMac });
        using var stop = new CancellationTokenSource();
        var server = new BackendServer(device, new BackendOptions(), NullLogger.Instance);
        using var listening = new ManualResetEventSlim();
        var thread = new Thread(() => server.Run(socket, stop.Token, listening.Set)) { IsBackground = true };
        thread.Start();
        try
        {
            Assert.True(listening.Wait(TimeSpan.FromSeconds(10)));
            using var client = NetClient.Connect(socket);
            Ip("addr", "add", $"10.231.{subnet}.1/24", "dev", name);
            Ip("link", "set", name, "up");

            // ARP: who has the host's address?
            var arp = new byte[42];
            MacAddress.Broadcast.Write(arp);
            GuestMac.Write(arp.AsSpan(6));
            BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(12), 0x0806);
            BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(14), 1);
            BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(16), 0x0800);
            arp[18] = 6; arp[19] = 4;
            BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(20), 1);
            GuestMac.Write(arp.AsSpan(22));
            guestIp.CopyTo(arp, 28);
            hostIp.CopyTo(arp, 38);
            Assert.True(client.Send(arp, TimeSpan.FromSeconds(5)));
            var reply = WaitFor(client, f => f.Length >= 42 && BinaryPrimitives.ReadUInt16BigEndian(f[12..]) == 0x0806
                && BinaryPrimitives.ReadUInt16BigEndian(f[20..]) == 2 && f.Slice(28, 4).SequenceEqual(hostIp), "ARP reply");
            var hostMac = MacAddress.Read(reply.AsSpan(22));

            // ICMP echo to the host.
            var ping = new byte[14 + 20 + 8 + 32];
            hostMac.Write(ping);
            GuestMac.Write(ping.AsSpan(6));
            BinaryPrimitives.WriteUInt16BigEndian(ping.AsSpan(12), 0x0800);
            var ipHeader = ping.AsSpan(14, 20);
            ipHeader[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ipHeader[2..], 20 + 8 + 32);
            ipHeader[8] = 64; ipHeader[9] = 1;
            guestIp.CopyTo(ipHeader[12..]);
            hostIp.CopyTo(ipHeader[16..]);
            BinaryPrimitives.WriteUInt16BigEndian(ipHeader[10..], Checksum(ipHeader));
            var icmp = ping.AsSpan(34);
            icmp[0] = 8;
            BinaryPrimitives.WriteUInt16BigEndian(icmp[4..], 0x5356);
            BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], 1);
            for (int i = 8; i < icmp.Length; i++) icmp[i] = (byte)i;
            BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum(icmp));
            Assert.True(client.Send(ping, TimeSpan.FromSeconds(5)));
            WaitFor(client, f => f.Length >= 42 && BinaryPrimitives.ReadUInt16BigEndian(f[12..]) == 0x0800 && f[23] == 1
                && f[34] == 0 && BinaryPrimitives.ReadUInt16BigEndian(f[38..]) == 0x5356, "ICMP echo reply");
            // Workers add to the shared counters once per batch, after handing the frames on: the host's
            // reply can reach us before the transmit worker has counted the frame that caused it.
            Assert.True(SpinWait.SpinUntil(() => Interlocked.Read(ref device.Port.Counters.TxFrames) >= 2, TimeSpan.FromSeconds(10)),
                $"tx frames counted: {Interlocked.Read(ref device.Port.Counters.TxFrames)}");
            Assert.True(SpinWait.SpinUntil(() => Interlocked.Read(ref device.Port.Counters.RxFrames) >= 2, TimeSpan.FromSeconds(10)),
                $"rx frames counted: {Interlocked.Read(ref device.Port.Counters.RxFrames)}");
            Assert.Equal(0, device.Port.Counters.TxDrops);
        }
        finally
        {
            stop.Cancel();
            thread.Join(TimeSpan.FromSeconds(10));
        }
    }

    private static byte[] WaitFor(NetClient client, Func<ReadOnlySpan<byte>, bool> match, string what)
    {
        var buffer = new byte[2048];
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            int n = client.Receive(buffer, TimeSpan.FromMilliseconds(200));
            if (n > 0 && match(buffer.AsSpan(0, n))) return buffer[..n];
        }
        throw new TimeoutException($"no {what} from the host");
    }

    private static ushort Checksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if (data.Length % 2 == 1) sum += (uint)data[^1] << 8;
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }
}
