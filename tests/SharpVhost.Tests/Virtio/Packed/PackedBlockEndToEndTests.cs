using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Block;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// Our BlockClient against our block backend over a real Unix socket, with VIRTIO_F_RING_PACKED
/// negotiated: the session builds packed queues, and every block written reads back as written.
/// </summary>
public sealed class PackedBlockEndToEndTests
{
    [Theory]
    [InlineData(MetadataAccess.Direct, 24, false)]  // not a power of two: only packed rings allow it
    [InlineData(MetadataAccess.Checked, 24, false)]
    [InlineData(MetadataAccess.Direct, 128, true)]
    public async Task Block_data_round_trips_over_a_packed_ring(MetadataAccess metadata, int queueSize, bool busyPoll)
        => await RoundTrip(metadata, queueSize, busyPoll, packed: true);

    [Fact]
    public async Task Without_ring_packed_the_same_session_builds_split_queues()
        => await RoundTrip(MetadataAccess.Direct, 64, busyPoll: false, packed: false);

    private static async Task RoundTrip(MetadataAccess metadata, int queueSize, bool busyPoll, bool packed)
    {
        const int blockSize = 4096;
        const int blocks = 300;
        const int depth = 8;
        string dir = Directory.CreateTempSubdirectory("sharpvhost-packed-").FullName;
        string socket = Path.Combine(dir, "blk.sock");
        using var storage = new RamStorage(blocks * blockSize);
        var device = new BlockDevice(storage, new BlockDeviceOptions { NumQueues = 1, QueueSize = queueSize, Serial = "packed-e2e" });
        var server = new BackendServer(device, new BackendOptions { Metadata = metadata, BusyPoll = busyPoll }, NullLogger.Instance);
        BackendSession? ended = null;
        server.SessionEnded += s => ended = s;
        using var stop = new CancellationTokenSource();
        using var listening = new ManualResetEventSlim();
        var serverThread = new Thread(() => server.Run(socket, stop.Token, listening.Set)) { IsBackground = true };
        serverThread.Start();
        Assert.True(listening.Wait(TimeSpan.FromSeconds(10)));
        try
        {
            using (var client = BlockClient.Connect(socket, new BlockClientOptions
                   { QueueSize = queueSize, QueueDepth = depth, PackedRing = packed, BufferBytes = depth * blockSize + (1 << 20) }))
            {
                Assert.Equal(packed, VirtioFeatureBits.Has(client.Features, VirtioFeatureBits.RingPacked));
                Assert.Equal("packed-e2e", await client.GetIdAsync());
                var buffers = Enumerable.Range(0, depth).Select(_ => client.AllocateBuffer(blockSize)).ToArray();
                await RunPhase(client, buffers, blocks, blockSize, write: true);
                long mismatches = await RunPhase(client, buffers, blocks, blockSize, write: false);
                Assert.Equal(0, mismatches);
                await client.FlushAsync();
            }
            stop.Cancel();
            Assert.True(serverThread.Join(TimeSpan.FromSeconds(10)));
            var queue = Assert.Single(ended!.Queues);
            Assert.Equal(packed, queue is PackedQueue);
            Assert.Null(queue.BrokenReason);
            Assert.True(queue.Counters.Requests >= 2 * blocks);
            Assert.Equal(metadata == MetadataAccess.Direct, queue.Counters.DirectBinds > 0);
        }
        finally
        {
            stop.Cancel();
            serverThread.Join(TimeSpan.FromSeconds(10));
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<long> RunPhase(BlockClient client, SharedBuffer[] buffers, int blocks, int blockSize, bool write)
    {
        long mismatches = 0;
        int depth = buffers.Length;
        var workers = Enumerable.Range(0, depth).Select(w => Task.Run(async () =>
        {
            var buffer = buffers[w];
            for (long b = w; b < blocks; b += depth)
            {
                if (write)
                {
                    Fill(buffer.Span, b);
                    await client.WriteAsync(b * blockSize, buffer);
                }
                else
                {
                    buffer.Span.Clear();
                    await client.ReadAsync(b * blockSize, buffer);
                    var expected = new byte[blockSize];
                    Fill(expected, b);
                    if (!buffer.Span.SequenceEqual(expected)) Interlocked.Increment(ref mismatches);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60)); // a hang fails instead of blocking the run
        return mismatches;
    }

    private static void Fill(Span<byte> block, long index)
    {
        for (int i = 0; i < block.Length; i++) block[i] = (byte)(index * 31 + i * 7 + (i >> 8));
    }
}
