using System.Diagnostics;
using System.Net.Sockets;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;

namespace SharpVhost.Tests.Protocol;

/// <summary>
/// Our wire format against a real back-end: qemu-storage-daemon's vhost-user-blk export
/// (libvhost-user, which is strict about sizes and fds). Fails, never skips, when the daemon is missing.
/// </summary>
public class RealPeerTests
{
    [Fact]
    public void NegotiatesWithQemuStorageDaemon()
    {
        const string daemon = "/usr/bin/qemu-storage-daemon";
        Assert.True(File.Exists(daemon), "qemu-storage-daemon is required (Debian package qemu-system-x86)");
        string dir = Directory.CreateTempSubdirectory("sv-proto-qsd").FullName;
        string sock = Path.Combine(dir, "blk.sock");
        string memPath = Path.Combine(dir, "mem");
        using var process = Process.Start(new ProcessStartInfo(daemon,
            ["--blockdev", "driver=null-co,node-name=n0,size=67108864",
             "--export", $"type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path={sock},writable=on"])
        { RedirectStandardError = true })!;
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!File.Exists(sock) && DateTime.UtcNow < deadline && !process.HasExited) Thread.Sleep(20);
            if (!File.Exists(sock))
            {
                if (!process.HasExited) process.Kill();
                Assert.Fail($"qemu-storage-daemon did not listen: {process.StandardError.ReadToEnd()}");
            }
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(sock));
            socket.ReceiveTimeout = 5000;
            using var fe = new FrontEndConnection(socket);

            ulong features = fe.GetU64(FrontEndRequest.GetFeatures);
            Assert.NotEqual(0UL, features & VhostUserFeatureBits.ProtocolFeatures);
            var protocol = (VhostUserProtocolFeatures)fe.GetU64(FrontEndRequest.GetProtocolFeatures);
            Assert.True(protocol.HasFlag(VhostUserProtocolFeatures.Config));
            var wanted = protocol & (VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.Config
                | VhostUserProtocolFeatures.MultiQueue | VhostUserProtocolFeatures.ConfigureMemSlots);
            fe.SetU64(FrontEndRequest.SetProtocolFeatures, (ulong)wanted);
            fe.ReplyAck = wanted.HasFlag(VhostUserProtocolFeatures.ReplyAck);
            Assert.True(fe.ReplyAck);
            fe.Send(FrontEndRequest.SetOwner);

            Assert.InRange(fe.GetU64(FrontEndRequest.GetQueueNum), 1UL, 1024UL);
            var config = fe.Call<ConfigSpace, ConfigSpace>(FrontEndRequest.GetConfig, new ConfigSpace(0, ConfigSpaceFlags.Writable, new byte[8]));
            Assert.Equal(64UL * 1024 * 1024 / 512, BitConverter.ToUInt64(config.Data)); // capacity in sectors

            fe.SetU64(FrontEndRequest.SetFeatures, features & (VhostUserFeatureBits.ProtocolFeatures | (1UL << 32)));

            // Guest memory backed by a plain shared file: one fd per region travels with the table.
            using (var mem = File.Open(memPath, FileMode.Create, FileAccess.ReadWrite))
            {
                mem.SetLength(1 << 20);
                fe.Send(FrontEndRequest.SetMemTable,
                    new MemoryTable([new MemoryRegion(0, 1 << 20, 0x7f00_0000_0000, 0)]),
                    [(int)mem.SafeFileHandle.DangerousGetHandle()]);
            }
            fe.Send(FrontEndRequest.SetVringNum, new VringState(0, 128));
            fe.Send(FrontEndRequest.SetVringBase, new VringState(0, 0));
            fe.Send(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None,
                0x7f00_0000_0000, 0x7f00_0000_2000, 0x7f00_0000_1000, 0));
            fe.Send(FrontEndRequest.SetVringCall, new VringFd(0, NoFd: true));
            Assert.Equal(new VringState(0, 0), fe.Call<VringState, VringState>(FrontEndRequest.GetVringBase, new VringState(0, 0)));
        }
        finally
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>QEMU as the front-end: it connects to our socket while realizing vhost-user-blk-pci
    /// (paused with -S, no guest needed) and negotiates; every message it sends must decode.</summary>
    [Fact]
    public void DecodesWhatQemuSends()
    {
        const string qemu = "/usr/bin/qemu-system-x86_64";
        Assert.True(File.Exists(qemu), "qemu-system-x86_64 is required (Debian package qemu-system-x86)");
        string dir = Directory.CreateTempSubdirectory("sv-proto-qemu").FullName;
        string sock = Path.Combine(dir, "blk.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(sock));
        listener.Listen(1);
        using var process = Process.Start(new ProcessStartInfo(qemu,
            ["-accel", "tcg", "-M", "q35", "-m", "64M", "-S", "-display", "none", "-monitor", "none", "-serial", "none",
             "-object", "memory-backend-memfd,id=mem,size=64M,share=on", "-numa", "node,memdev=mem",
             "-chardev", $"socket,id=c0,path={sock}", "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1"])
        { RedirectStandardError = true, RedirectStandardOutput = true })!;
        var seen = new List<FrontEndRequest>();
        try
        {
            Assert.True(listener.Poll(TimeSpan.FromSeconds(20), SelectMode.SelectRead), "QEMU did not connect");
            using var channel = new VhostUserChannel(listener.Accept(), VhostUserRole.BackEnd);
            channel.Socket.ReceiveTimeout = 3000;
            const ulong features = VhostUserFeatureBits.ProtocolFeatures | (1UL << 32) | (1UL << 12) | (1UL << 9);
            var protocol = VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.MultiQueue;
            try
            {
                // QEMU negotiates, reads the config space, then waits for the guest: stop at the first quiet spell.
                while (channel.Receive() is { } msg)
                {
                    using (msg)
                    {
                        seen.Add(msg.FrontEndRequest);
                        switch (msg.FrontEndRequest)
                        {
                            case FrontEndRequest.GetFeatures: channel.SendReplyU64(msg, features); break;
                            case FrontEndRequest.GetProtocolFeatures: channel.SendReplyU64(msg, (ulong)protocol); break;
                            case FrontEndRequest.GetQueueNum: channel.SendReplyU64(msg, 1); break;
                            case FrontEndRequest.GetMaxMemSlots: channel.SendReplyU64(msg, 8); break;
                            case FrontEndRequest.GetConfig:
                                var request = msg.ParsePayload<ConfigSpace>();
                                var data = new byte[request.Data.Length];
                                BitConverter.TryWriteBytes(data, 2048UL); // capacity: 1 MiB
                                channel.SendReply(msg, request with { Data = data });
                                break;
                            case FrontEndRequest.GetVringBase:
                                channel.SendReply(msg, msg.ParsePayload<VringState>() with { Num = 0 });
                                break;
                            default:
                                channel.Acknowledge(msg, success: true);
                                break;
                        }
                    }
                }
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
            {
            }
            Console.WriteLine("QEMU sent: " + string.Join(", ", seen));
            Assert.Contains(FrontEndRequest.GetFeatures, seen);
            Assert.Contains(FrontEndRequest.SetProtocolFeatures, seen);
            Assert.Contains(FrontEndRequest.GetConfig, seen);
        }
        finally
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit();
            Directory.Delete(dir, recursive: true);
        }
    }
}
