using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;

namespace SharpVhost.Tests.Backend;

/// <summary>
/// The server's other ways in: an inherited fd (<c>--fd</c>), listening or already connected, and a
/// second frontend that connects while the first is still being served.
/// </summary>
public partial class BackendServerFdTests
{
    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup(int fd);

    private static void Wait(Task task) => Assert.True(task.Wait(TestServer.Timeout), "request did not complete");

    private static BlockDevice Device() => new(new RamStorage(1 << 20), new BlockDeviceOptions());

    [Fact]
    public void ServesAnInheritedListeningSocketUntilCancelled()
    {
        string dir = Directory.CreateTempSubdirectory("sv-fd-").FullName;
        try
        {
            string path = Path.Combine(dir, "blk.sock");
            using var listener = BackendServer.Listen(path);
            int fd = dup((int)listener.Handle);
            Assert.True(fd >= 0);
            var device = Device();
            var server = new BackendServer(device, new BackendOptions(), NullLogger.Instance);
            int ended = 0;
            server.SessionEnded += _ => Interlocked.Increment(ref ended);
            using var stop = new CancellationTokenSource();
            Exception? failure = null;
            var thread = new Thread(() => { try { server.Run(fd, stop.Token); } catch (Exception e) { failure = e; } }) { IsBackground = true };
            thread.Start();
            for (int i = 0; i < 2; i++)
            {
                using var client = BlockClient.Connect(path, new BlockClientOptions { BufferBytes = 1 << 20 });
                Wait(client.FlushAsync());
            }
            Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref ended) == 2, TestServer.Timeout));
            stop.Cancel();
            Assert.True(thread.Join(TestServer.Timeout), "server did not stop");
            Assert.Null(failure);
            device.Storage.Dispose();
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ServesAnInheritedConnectedSocketOnce()
    {
        var (mine, theirs) = UnixSockets.CreatePair();
        int fd = dup((int)theirs.Handle);
        theirs.Dispose();
        var device = Device();
        var server = new BackendServer(device, new BackendOptions(), NullLogger.Instance);
        Exception? failure = null;
        var thread = new Thread(() => { try { server.Run(fd, CancellationToken.None); } catch (Exception e) { failure = e; } }) { IsBackground = true };
        thread.Start();
        mine.ReceiveTimeout = (int)TestServer.Timeout.TotalMilliseconds;
        using (var frontend = new FrontEndConnection(mine))
        {
            Assert.NotEqual(0UL, frontend.GetU64(FrontEndRequest.GetFeatures));
            Assert.Equal(1UL, frontend.GetU64(FrontEndRequest.GetQueueNum));
        }
        Assert.True(thread.Join(TestServer.Timeout), "server did not return when its one connection ended");
        Assert.Null(failure);
        device.Storage.Dispose();
    }

    [Fact]
    public void ASecondFrontendIsServedOnceTheFirstLeaves()
    {
        using var server = TestServer.Ram();
        using var first = server.ConnectRaw();
        using var firstChannel = new FrontEndConnection(first);
        Assert.NotEqual(0UL, firstChannel.GetU64(FrontEndRequest.GetFeatures));
        // The second one connects (the listen backlog holds it) but gets nothing while the first is served.
        using var second = server.ConnectRaw();
        second.ReceiveTimeout = 300;
        using var secondChannel = new FrontEndConnection(second);
        Assert.Throws<SocketException>(() => secondChannel.GetU64(FrontEndRequest.GetFeatures));
        firstChannel.Dispose();
        second.ReceiveTimeout = (int)TestServer.Timeout.TotalMilliseconds;
        // Its request was queued on the socket: the answer comes once the server gets to it.
        using var reply = secondChannel.Channel.Receive();
        Assert.NotNull(reply);
        Assert.Equal((uint)FrontEndRequest.GetFeatures, reply!.RequestId);
        Assert.Equal(1UL, secondChannel.GetU64(FrontEndRequest.GetQueueNum));
    }
}
