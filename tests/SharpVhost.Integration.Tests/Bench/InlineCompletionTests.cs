using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Block;
using SharpVhost.VhostUser.Backend;

namespace SharpVhost.Integration.Tests.Bench;

/// <summary>The frontend's inline-completion mode the benchmarks drive: same results, no deadlock when a continuation disposes.</summary>
public sealed class InlineCompletionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharpvhost-inline-").FullName;
    private readonly CancellationTokenSource _stop = new();
    private readonly RamStorage _storage = new(8 << 20);
    private readonly Thread _server;
    private readonly string _socket;

    public InlineCompletionTests()
    {
        _socket = Path.Combine(_dir, "blk.sock");
        var server = new BackendServer(new BlockDevice(_storage, new BlockDeviceOptions()), new BackendOptions(), NullLogger.Instance);
        using var listening = new ManualResetEventSlim();
        _server = new Thread(() => server.Run(_socket, _stop.Token, listening.Set)) { IsBackground = true };
        _server.Start();
        Assert.True(listening.Wait(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Requests_complete_inline_with_the_data_written()
    {
        using var client = BlockClient.Connect(_socket, new BlockClientOptions { InlineCompletions = true, QueueDepth = 8, BufferBytes = 1 << 20 });
        var buffers = Enumerable.Range(0, 8).Select(_ => client.AllocateBuffer(4096)).ToArray();
        var loops = Enumerable.Range(0, 8).Select(async w =>
        {
            for (int i = 0; i < 50; i++)
            {
                long offset = (w * 50 + i) * 4096L;
                buffers[w].Span.Fill((byte)(w * 31 + i));
                await client.WriteAsync(offset, buffers[w]);
                buffers[w].Span.Clear();
                await client.ReadAsync(offset, buffers[w]);
                Assert.True(buffers[w].Span.IndexOfAnyExcept((byte)(w * 31 + i)) < 0);
            }
        });
        await Task.WhenAll(loops).WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task A_continuation_may_dispose_the_client()
    {
        var client = BlockClient.Connect(_socket, new BlockClientOptions { InlineCompletions = true, BufferBytes = 1 << 20 });
        var buffer = client.AllocateBuffer(4096);
        var disposed = client.ReadAsync(0, buffer).ContinueWith(_ => client.Dispose(), TaskContinuationOptions.ExecuteSynchronously);
        await disposed.WaitAsync(TimeSpan.FromSeconds(30));
    }

    public void Dispose()
    {
        _stop.Cancel();
        _server.Join(TimeSpan.FromSeconds(10));
        _storage.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
