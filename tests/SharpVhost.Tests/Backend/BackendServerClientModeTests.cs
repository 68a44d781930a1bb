using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Block;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;

namespace SharpVhost.Tests.Backend;

/// <summary>
/// Client mode: the server connects to a socket the frontend listens on, waits while nothing
/// listens there, and connects again each time the frontend hangs up. And the socket file a
/// listening server creates gets the mode it was given before anyone can connect.
/// </summary>
public sealed class BackendServerClientModeTests
{
    [Fact]
    public async Task ConnectsOnceTheFrontendListensAndAgainAfterItHangsUp()
    {
        string dir = Directory.CreateTempSubdirectory("sv-client-").FullName;
        try
        {
            string path = Path.Combine(dir, "qemu.sock");
            var device = new BlockDevice(new RamStorage(1 << 20), new BlockDeviceOptions { NumQueues = 3 });
            var server = new BackendServer(device, new BackendOptions(), NullLogger.Instance);
            using var stop = new CancellationTokenSource();
            Exception? failure = null;
            // Started before the frontend listens: the path does not even exist yet.
            var thread = new Thread(() => { try { server.RunClient(path, stop.Token); } catch (Exception e) { failure = e; } }) { IsBackground = true };
            thread.Start();

            using (var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                listener.Bind(new UnixDomainSocketEndPoint(path));
                listener.Listen(1);
                for (int round = 0; round < 2; round++)
                {
                    using var bounded = new CancellationTokenSource(TestServer.Timeout);
                    var socket = await listener.AcceptAsync(bounded.Token); // throws if the backend never connects
                    socket.ReceiveTimeout = (int)TestServer.Timeout.TotalMilliseconds;
                    using var frontend = new FrontEndConnection(socket); // disposing it hangs up, like a QEMU that exits
                    Assert.NotEqual(0UL, frontend.GetU64(FrontEndRequest.GetFeatures));
                    Assert.Equal(3UL, frontend.GetU64(FrontEndRequest.GetQueueNum));
                }
            }
            stop.Cancel();
            Assert.True(thread.Join(TestServer.Timeout), "client loop did not stop when cancelled");
            Assert.Null(failure);
            device.Storage.Dispose();
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ListeningSocketFileGetsTheGivenMode()
    {
        string dir = Directory.CreateTempSubdirectory("sv-mode-").FullName;
        try
        {
            string path = Path.Combine(dir, "blk.sock");
            var mode = SocketFileAccess.ParseMode("0600");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode);
            using var listener = BackendServer.Listen(path, new SocketFileAccess(mode, null));
            Assert.Equal(mode, OperatingSystem.IsWindows() ? default : File.GetUnixFileMode(path));
            Assert.Throws<FormatException>(() => SocketFileAccess.ParseMode("0869"));
            Assert.Throws<FormatException>(() => SocketFileAccess.ParseMode("u+rw"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
