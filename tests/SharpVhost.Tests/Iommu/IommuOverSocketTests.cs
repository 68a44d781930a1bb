using SharpVhost.Devices.Block;
using SharpVhost.Tests.Backend;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;
using Xunit.Abstractions;

namespace SharpVhost.Tests.Iommu;

/// <summary>
/// Our frontend library plays QEMU with a virtual IOMMU against our backend over a real socket: the
/// backend knows nothing but IOVAs, asks for every translation over the back-end request channel, and
/// keeps serving while the "guest" unmaps and remaps the very pages its requests use.
/// </summary>
public class IommuOverSocketTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TestServer.Timeout;

    public static TheoryData<MetadataAccess, bool> Configurations() => new()
    {
        { MetadataAccess.Direct, false }, { MetadataAccess.Checked, false },
        { MetadataAccess.Direct, true }, { MetadataAccess.Checked, true },
    };

    private static void Fill(Span<byte> bytes, int seed)
    {
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 13 + seed * 5 + (i >> 8));
    }


    [Theory, MemberData(nameof(Configurations))]
    public async Task InvalidationsRacingABusyQueueLoseNothing(MetadataAccess access, bool packed)
    {
        const long capacity = 4 << 20;
        const int blocks = 8, blockSize = 16384, rounds = 60;
        using var server = new TestServer(new BlockDevice(new RamStorage(capacity), new BlockDeviceOptions()), new BackendOptions { Metadata = access });
        long clientInvalidations, clientMisses;
        using (var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions
               { QueueSize = 64, QueueDepth = 8, BufferBytes = 1 << 20, PackedRing = packed, Iommu = true }))
        {
            Assert.True(VirtioFeatureBits.Has(client.Features, VirtioFeatureBits.AccessPlatform));
            Assert.Equal(packed, VirtioFeatureBits.Has(client.Features, VirtioFeatureBits.RingPacked));
            var iommu = client.Iommu!;
            var buffers = Enumerable.Range(0, blocks).Select(_ => client.AllocateBuffer(blockSize)).ToArray();

            // The racer unmaps and remaps every 64 KiB piece of the client's memory in turn: rings,
            // request headers and data buffers, while requests on them are in flight.
            using var stop = new CancellationTokenSource();
            const ulong piece = 64 << 10;
            var racer = Task.Run(() =>
            {
                for (ulong at = 0; !stop.IsCancellationRequested; at = (at + piece) % client.Memory.Size)
                {
                    ulong size = Math.Min(piece, client.Memory.Size - at);
                    iommu.Unmap(at, size);
                    iommu.Map(at, size, client.Memory.ToFrontendVirtual(at), VhostUser.Protocol.IotlbPermission.ReadWrite);
                }
            });
            try
            {
                var expected = new byte[blockSize];
                for (int round = 0; round < rounds; round++)
                {
                    for (int b = 0; b < blocks; b++) Fill(buffers[b].Span, round * blocks + b);
                    await Task.WhenAll(Enumerable.Range(0, blocks).Select(b => client.WriteAsync((long)b * blockSize, buffers[b]))).WaitAsync(Timeout);
                    foreach (var buffer in buffers) buffer.Span.Fill(0xEE);
                    await Task.WhenAll(Enumerable.Range(0, blocks).Select(b => client.ReadAsync((long)b * blockSize, buffers[b]))).WaitAsync(Timeout);
                    for (int b = 0; b < blocks; b++)
                    {
                        Fill(expected, round * blocks + b);
                        Assert.True(buffers[b].Span.SequenceEqual(expected), $"round {round}, block {b} read back differently");
                    }
                }
            }
            finally
            {
                stop.Cancel();
                await racer.WaitAsync(Timeout);
            }
            clientInvalidations = iommu.Invalidations;
            clientMisses = iommu.Misses;
        }
        Assert.True(SpinWait.SpinUntil(() => server.SessionsEnded == 1, Timeout));
        Assert.True(server.EndedSessions.TryDequeue(out var session));
        var queue = session.Queues[0];
        output.WriteLine($"{access}, {(packed ? "packed" : "split")}: {rounds * blocks * 2} requests, {clientInvalidations} IOTLB invalidations "
            + $"(backend completed {session.Memory.IotlbInvalidations}), {clientMisses} misses answered by the frontend, "
            + $"{queue.Counters.IotlbMisses} misses sent by the queue, {queue.Counters.Revalidations} ring re-validations");
        Assert.False(queue.IsBroken, queue.BrokenReason);
        Assert.Equal(clientInvalidations, session.Memory.IotlbInvalidations);
        Assert.True(clientInvalidations >= 50, $"only {clientInvalidations} invalidations raced the queue");
        Assert.True(queue.Counters.IotlbMisses > 0);
        Assert.Empty(server.Log.Entries);
    }
}
