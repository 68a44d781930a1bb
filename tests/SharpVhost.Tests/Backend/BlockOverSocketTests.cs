using System.Net.Sockets;
using SharpVhost.Devices.Block;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Backend;

/// <summary>
/// The happy path over a real Unix socket: our <see cref="BlockClient"/> (the frontend library)
/// against our <see cref="BackendServer"/>, every request type with its data checked.
/// </summary>
public class BlockOverSocketTests
{
    private static readonly TimeSpan Timeout = TestServer.Timeout;

    public static TheoryData<string, int, MetadataAccess, bool> Configurations()
    {
        var data = new TheoryData<string, int, MetadataAccess, bool>();
        // "delayed": an asynchronous engine completing each operation 1 ms after submission, on a timer
        // thread, in whatever order the timers fire: requests overlap and complete out of order.
        foreach (var storage in new[] { "ram", "file", "delayed" })
            foreach (int queues in new[] { 1, 2 })
                foreach (var access in new[] { MetadataAccess.Direct, MetadataAccess.Checked })
                    foreach (bool packed in new[] { false, true })
                        data.Add(storage, queues, access, packed);
        return data;
    }

    private static IBlockStorage CreateStorage(string kind, string dir, long capacity, bool readOnly = false)
    {
        if (kind == "ram") return new RamStorage(capacity);
        if (kind == "delayed") return new Block.EngineStorage(capacity, (ram, depth) => new Block.DelayedEngine(ram, depth, TimeSpan.FromMilliseconds(1)));
        string path = Path.Combine(dir, "disk.img");
        using (var f = File.Create(path)) f.SetLength(capacity);
        return new FileStorage(path, readOnly);
    }

    private static void Fill(Span<byte> bytes, int seed)
    {
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 31 + seed * 7 + (i >> 9));
    }

    private static void Wait(Task task) => Assert.True(task.Wait(Timeout), "request did not complete");

    private static T Result<T>(Task<T> task)
    {
        Assert.True(task.Wait(Timeout), "request did not complete");
        return task.Result;
    }

    private static Exception Fails(Task task)
    {
        var e = Assert.Throws<AggregateException>(() => task.Wait(Timeout));
        return e.InnerException!;
    }

    [Theory]
    [MemberData(nameof(Configurations))]
    public void EveryRequestTypeMovesTheRightBytes(string storageKind, int queues, MetadataAccess access, bool packed)
    {
        const long capacity = 4 << 20;
        string dir = Directory.CreateTempSubdirectory("sv-blk-").FullName;
        try
        {
            using var server = new TestServer(new BlockDevice(CreateStorage(storageKind, dir, capacity),
                new BlockDeviceOptions { NumQueues = queues, Serial = "sv-serial-0123456789xyz" }), new BackendOptions { Metadata = access });
            using (var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions { NumQueues = queues, QueueSize = 64, QueueDepth = 8, BufferBytes = 1 << 20, PackedRing = packed }))
            {
                Assert.Equal(packed, VirtioFeatureBits.Has(client.Features, VirtioFeatureBits.RingPacked));
                Assert.Equal(capacity, client.Capacity);
                Assert.Equal(queues, client.NumQueues);
                Assert.True(VirtioFeatureBits.Has(client.Features, VirtioBlk.FeatureDiscard));
                Assert.True(VirtioFeatureBits.Has(client.Features, VirtioBlk.FeatureWriteZeroes));
                Assert.False(VirtioFeatureBits.Has(client.Features, VirtioBlk.FeatureReadOnly));

                // GET_ID: the serial cut to 20 bytes.
                Assert.Equal("sv-serial-0123456789", Result(client.GetIdAsync()));

                // Several writes in flight on every queue, then read each back.
                const int blocks = 16, blockSize = 8192;
                var buffers = Enumerable.Range(0, blocks).Select(_ => client.AllocateBuffer(blockSize)).ToArray();
                for (int b = 0; b < blocks; b++) Fill(buffers[b].Span, b);
                Wait(Task.WhenAll(Enumerable.Range(0, blocks).Select(b => client.WriteAsync((long)b * blockSize * 3, buffers[b]))));
                Wait(client.FlushAsync());
                foreach (var buffer in buffers) buffer.Span.Fill(0xEE);
                Wait(Task.WhenAll(Enumerable.Range(0, blocks).Select(b => client.ReadAsync((long)b * blockSize * 3, buffers[b]))));
                var expected = new byte[blockSize];
                for (int b = 0; b < blocks; b++)
                {
                    Fill(expected, b);
                    Assert.True(buffers[b].Span.SequenceEqual(expected), $"block {b} read back differently");
                }

                // The last sector of the disk works; one past it is an I/O error.
                var sector = client.AllocateBuffer(512);
                Fill(sector.Span, 99);
                Wait(client.WriteAsync(capacity - 512, sector));
                Assert.IsType<IOException>(Fails(client.WriteAsync(capacity, sector)));
                Assert.IsType<IOException>(Fails(client.ReadAsync(capacity, sector)));
                Assert.IsType<IOException>(Fails(client.ReadAsync(capacity - 512, client.AllocateBuffer(1024))));

                // WRITE_ZEROES (with and without unmap) and DISCARD zero what they cover and nothing else.
                Wait(client.WriteZeroesAsync(0, blockSize));
                Wait(client.WriteZeroesAsync((long)blockSize * 3, 4096, unmap: true));
                Wait(client.DiscardAsync((long)blockSize * 6, blockSize));
                Assert.IsType<IOException>(Fails(client.DiscardAsync(capacity - 512, 1024)));
                var check = client.AllocateBuffer(blockSize);
                for (int b = 0; b < 4; b++)
                {
                    check.Span.Fill(0xEE);
                    Wait(client.ReadAsync((long)b * blockSize * 3, check));
                    Fill(expected, b);
                    if (b == 1) expected.AsSpan(0, 4096).Clear();
                    if (b is 0 or 2) expected.AsSpan().Clear();
                    Assert.True(check.Span.SequenceEqual(expected), $"block {b} after zeroing");
                }
            }
            server.WaitSessionsEnded(1);
            var session = server.EndedSessions.Single();
            // Round-robin submission used every queue.
            Assert.All(session.Queues, q => Assert.True(q.Counters.Requests > 0, $"queue {q.Index} served nothing"));
            Assert.All(session.Queues, q => Assert.Equal(packed, q is PackedQueue));
            if (access == MetadataAccess.Checked) Assert.All(session.Queues, q => Assert.Equal(0, q.Counters.DirectBinds));
            else Assert.All(session.Queues, q => Assert.True(q.Counters.DirectBinds > 0));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ReadOnlyDeviceRefusesWritesAndOffersNoDiscard()
    {
        string dir = Directory.CreateTempSubdirectory("sv-blk-ro-").FullName;
        try
        {
            string path = Path.Combine(dir, "disk.img");
            var content = new byte[1 << 20];
            Fill(content, 5);
            File.WriteAllBytes(path, content);
            using var server = new TestServer(new BlockDevice(new FileStorage(path, readOnly: true), new BlockDeviceOptions()));
            using (var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions { BufferBytes = 1 << 20 }))
            {
                Assert.True(VirtioFeatureBits.Has(client.Features, VirtioBlk.FeatureReadOnly));
                Assert.False(VirtioFeatureBits.Has(client.Features, VirtioBlk.FeatureDiscard));
                Assert.False(VirtioFeatureBits.Has(client.Features, VirtioBlk.FeatureWriteZeroes));
                var buffer = client.AllocateBuffer(4096);
                Wait(client.ReadAsync(4096, buffer));
                Assert.True(buffer.Span.SequenceEqual(content.AsSpan(4096, 4096)));

                buffer.Span.Fill(0x55);
                var write = Fails(client.WriteAsync(4096, buffer));
                Assert.IsType<IOException>(write);
                Assert.Contains("status 1", write.Message); // IOERR
                // Discard and write-zeroes were not offered; sent anyway they are unsupported.
                Assert.Contains("not supported", Fails(client.DiscardAsync(0, 4096)).Message);
                Assert.Contains("not supported", Fails(client.WriteZeroesAsync(0, 4096)).Message);
                Wait(client.FlushAsync());
            }
            Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(content), "a read-only disk changed");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ServesTheNextConnectionAfterOneEnds()
    {
        using var server = TestServer.Ram();
        for (int round = 0; round < 3; round++)
        {
            using var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions { BufferBytes = 1 << 20 });
            var buffer = client.AllocateBuffer(4096);
            if (round > 0)
            {
                // The data written by the previous connection is still there.
                Wait(client.ReadAsync(0, buffer));
                var expected = new byte[4096];
                Fill(expected, round - 1);
                Assert.True(buffer.Span.SequenceEqual(expected));
            }
            Fill(buffer.Span, round);
            Wait(client.WriteAsync(0, buffer));
        }
        server.WaitSessionsEnded(3);
    }

    [Fact]
    public void AFrontendThatVanishesMidSetupDoesNotStopTheServer()
    {
        using var server = TestServer.Ram();
        using (var raw = server.ConnectRaw()) { } // connects and leaves at once
        using (var raw = server.ConnectRaw()) raw.Send([1, 0, 0]); // half a header
        server.WaitSessionsEnded(2);
        using var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions { BufferBytes = 1 << 20 });
        Wait(client.FlushAsync());
    }

    [Fact]
    public void CancellationStopsTheIdleServerAndRemovesTheSocket()
    {
        var server = TestServer.Ram();
        try
        {
            Assert.True(File.Exists(server.SocketPath));
            server.Stop();
            Assert.Null(server.Failure);
            Assert.False(File.Exists(server.SocketPath), "socket file left behind");
        }
        finally { server.Dispose(); }
    }

    [Fact]
    public void CancellationEndsAnActiveConnection()
    {
        var server = TestServer.Ram();
        try
        {
            using var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions { BufferBytes = 1 << 20 });
            var buffer = client.AllocateBuffer(4096);
            Wait(client.WriteAsync(0, buffer));
            server.Stop(); // returns only once the connection was torn down and the server left
            Assert.Null(server.Failure);
            Assert.False(File.Exists(server.SocketPath));
            Assert.Equal(1, server.SessionsEnded);
        }
        finally { server.Dispose(); }
    }

    [Fact]
    public void AStaleSocketFileIsReplaced()
    {
        string dir = Directory.CreateTempSubdirectory("sv-stale-").FullName;
        try
        {
            string path = Path.Combine(dir, "blk.sock");
            // A backend that died leaves its socket file: bound, never unlinked, nobody listening.
            // (.NET unlinks what it bound on dispose, so bind elsewhere and move the file into place.)
            using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            {
                dead.Bind(new UnixDomainSocketEndPoint(path + ".tmp"));
                File.Move(path + ".tmp", path);
            }
            Assert.True(File.Exists(path));
            using var server = new TestServer(new BlockDevice(new RamStorage(1 << 20), new BlockDeviceOptions()), socketPath: path);
            Assert.Null(server.Failure);
            using var client = BlockClient.Connect(path, new BlockClientOptions { BufferBytes = 1 << 20 });
            Wait(client.FlushAsync());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ASocketInUseIsRefused()
    {
        using var first = TestServer.Ram();
        using var second = new TestServer(new BlockDevice(new RamStorage(1 << 20), new BlockDeviceOptions()), socketPath: first.SocketPath);
        Assert.IsType<IOException>(second.Failure);
        Assert.Contains("in use", second.Failure!.Message);
        // The refused server did not take the path away from the one serving it.
        Assert.True(File.Exists(first.SocketPath));
        using var client = BlockClient.Connect(first.SocketPath, new BlockClientOptions { BufferBytes = 1 << 20 });
        Wait(client.FlushAsync());
    }
}
