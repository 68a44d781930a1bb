using System.Security.Cryptography;
using SharpVhost.Devices.Block;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Block;

/// <summary>
/// Our frontend library drives every block backend (qemu-storage-daemon and ours, both accessors)
/// with the same workload; what it reads back, and the image files left behind, must be identical.
/// </summary>
public sealed class FrontendAgainstPeersTests
{
    private const long ImageBytes = 16 << 20;

    [Fact]
    public async Task The_same_workload_gives_identical_results_on_every_backend()
    {
        var results = new Dictionary<string, (string Reads, string Image)>();
        foreach (var name in BlockBackends.All.Keys)
            results[name] = await RunAsync(name);
        var reference = results["qemu-storage-daemon"];
        Assert.All(results, r =>
        {
            Assert.True(r.Value.Reads == reference.Reads, $"{r.Key}: reads differ from qemu-storage-daemon's");
            Assert.True(r.Value.Image == reference.Image, $"{r.Key}: image differs from qemu-storage-daemon's");
        });
    }

    private static async Task<(string Reads, string Image)> RunAsync(string backend)
    {
        using var temp = new TempDirectory();
        var image = temp.File("disk.img");
        using (var file = File.Create(image)) file.SetLength(ImageBytes);
        var socket = temp.File("blk.sock");
        using var reads = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        await using (var server = await BlockBackends.Get(backend).StartAsync(new BlockBackendRequest(socket, image, 1, temp.Path)))
        {
            using var client = BlockClient.Connect(socket, new BlockClientOptions { QueueDepth = 8, BufferBytes = 8 << 20 });
            Assert.Equal(ImageBytes, client.Capacity);
            var random = new Random(42);
            var buffers = Enumerable.Range(0, 8).Select(_ => client.AllocateBuffer(256 << 10)).ToArray();
            // Writes of several sizes at several offsets, 8 in flight at a time. Writes in flight together
            // never overlap (each has its own eighth of the disk): virtio-blk orders nothing between
            // requests in flight, so overlapping ones may land in any order on an asynchronous backend.
            // Later rounds overwrite earlier ones anywhere.
            const long lane = ImageBytes / 8;
            for (int round = 0; round < 8; round++)
            {
                var writes = buffers.Select((buffer, i) =>
                {
                    int sectors = random.Next(1, 512);
                    long offset = i * lane + random.NextInt64(0, (lane - sectors * 512L) / 512) * 512;
                    var slice = buffer.Slice(0, sectors * 512);
                    random.NextBytes(slice.Span);
                    return client.WriteAsync(offset, slice);
                }).ToArray();
                await Task.WhenAll(writes);
            }
            await client.FlushAsync();
            for (long offset = 0; offset < ImageBytes; offset += 256 << 10)
            {
                await client.ReadAsync(offset, buffers[0]);
                reads.AppendData(buffers[0].Span);
            }
        }
        return (Convert.ToHexString(reads.GetHashAndReset()), Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(image))));
    }
}
