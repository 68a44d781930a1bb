using System.Runtime.InteropServices;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;

namespace SharpVhost.Tests.Block;

/// <summary>Page-aligned native memory standing in for guest memory (O_DIRECT needs the alignment).</summary>
internal sealed unsafe class AlignedBuffer : IDisposable
{
    public nint Address { get; }
    public int Length { get; }
    public AlignedBuffer(int length)
    {
        Length = length;
        Address = (nint)NativeMemory.AlignedAlloc((nuint)length, 4096);
        Span.Clear();
    }
    public Span<byte> Span => new((void*)Address, Length);
    public IoSegment Segment(int offset, int length) => new(Address + offset, length);
    public void Dispose() => NativeMemory.AlignedFree((void*)Address);
}

/// <summary>
/// The file engines (io_uring, threads, and the delay wrapper over each) against real files in /tmp,
/// each result checked by reading the file back with ordinary I/O.
/// </summary>
public sealed class StorageEngineTests : IDisposable
{
    private const int Enoent = 2, Ebadf = 9, Einval = 22, Ecanceled = 125, Eio = 5;
    private readonly string _dir = Directory.CreateTempSubdirectory("engine-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Engines => ["io_uring", "threads", "io_uring+delay", "threads+delay"];

    private string Image(int size, byte fill = 0)
    {
        string path = Path.Combine(_dir, $"img-{Guid.NewGuid():N}");
        var bytes = new byte[size];
        if (fill != 0) Array.Fill(bytes, fill);
        else for (int i = 0; i < size; i++) bytes[i] = (byte)(i * 7 + i / 4096);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static IBlockQueueEngine Create(string engine, FileStorage storage, int depth)
    {
        var inner = storage.CreateQueueEngine(depth);
        return engine.EndsWith("+delay") ? new DelayEngine(inner, TimeSpan.FromMicroseconds(500)) : inner;
    }

    private static FileStorage Open(string engine, string path, bool readOnly = false, bool direct = false) =>
        new(path, readOnly, direct, engine.StartsWith("threads") ? StorageEngineKind.Threads : StorageEngineKind.IoUring);

    /// <summary>Waits on the completion fd and reaps until <paramref name="count"/> completions came, bounded.</summary>
    private static List<BlockCompletion> ReapAll(IBlockQueueEngine engine, int count)
    {
        var got = new List<BlockCompletion>();
        Span<BlockCompletion> batch = stackalloc BlockCompletion[8];
        var deadline = Environment.TickCount64 + 20_000;
        while (got.Count < count)
        {
            Assert.True(Environment.TickCount64 < deadline, $"only {got.Count} of {count} completions arrived");
            int n = engine.Reap(batch);
            for (int i = 0; i < n; i++) got.Add(batch[i]);
            if (n == 0 && got.Count < count && engine.CompletionFd >= 0) EventFd.WaitAny([engine.CompletionFd], 1000);
        }
        return got;
    }

    private static BlockCompletion One(IBlockQueueEngine engine) => ReapAll(engine, 1).Single();

    [Theory, MemberData(nameof(Engines))]
    public void Vectored_write_then_read_moves_every_segment_in_order(string kind)
    {
        string path = Image(1 << 20);
        using var storage = Open(kind, path);
        using var engine = Create(kind, storage, 8);
        using var buffer = new AlignedBuffer(3 * 4096);
        for (int i = 0; i < buffer.Length; i++) buffer.Span[i] = (byte)(0xA0 ^ i);
        // Three segments of odd sizes, out of buffer order: the file gets them back to back.
        IoSegment[] write = [buffer.Segment(8192, 100), buffer.Segment(0, 4000), buffer.Segment(5000, 3000)];
        Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Write, 12345, 7100, write, token: 1)));
        engine.Submit();
        Assert.Equal(new BlockCompletion(1, 7100), One(engine));

        var file = File.ReadAllBytes(path);
        var expected = buffer.Span.Slice(8192, 100).ToArray().Concat(buffer.Span[..4000].ToArray()).Concat(buffer.Span.Slice(5000, 3000).ToArray()).ToArray();
        Assert.Equal(expected, file.AsSpan(12345, 7100).ToArray());

        using var back = new AlignedBuffer(3 * 4096);
        IoSegment[] read = [back.Segment(0, 7000), back.Segment(8192, 100)];
        Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 12345, 7100, read, token: 2)));
        engine.Submit();
        Assert.Equal(new BlockCompletion(2, 7100), One(engine));
        Assert.Equal(expected[..7000], back.Span[..7000].ToArray());
        Assert.Equal(expected[7000..], back.Span.Slice(8192, 100).ToArray());
        Assert.Equal(0, engine.InFlight);
    }

    [Theory, MemberData(nameof(Engines))]
    public void Many_in_flight_complete_in_any_order_each_with_its_own_data(string kind)
    {
        const int depth = 32;
        string path = Image(4 << 20);
        var file = File.ReadAllBytes(path);
        using var storage = Open(kind, path);
        using var engine = Create(kind, storage, depth);
        using var buffer = new AlignedBuffer(depth * 4096);
        var rng = new Random(14);
        var offsets = Enumerable.Range(0, depth).Select(_ => (long)rng.Next(0, (4 << 20) / 4096) * 4096).ToArray();
        for (int i = 0; i < depth; i++)
            Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, offsets[i], 4096, [buffer.Segment(i * 4096, 4096)], token: 100 + (ulong)i)));
        Assert.Equal(depth, engine.InFlight);
        engine.Submit(); // one submission for the whole batch
        var done = ReapAll(engine, depth);
        Assert.Equal(Enumerable.Range(100, depth).Select(i => (ulong)i).Order(), done.Select(c => c.Token).Order());
        Assert.All(done, c => Assert.Equal(4096, c.Result));
        for (int i = 0; i < depth; i++) Assert.Equal(file.AsSpan((int)offsets[i], 4096).ToArray(), buffer.Span.Slice(i * 4096, 4096).ToArray());
    }

    [Theory, MemberData(nameof(Engines))]
    public void More_than_depth_is_refused_until_one_is_reaped(string kind)
    {
        string path = Image(1 << 20);
        using var storage = Open(kind, path);
        using var engine = Create(kind, storage, 4);
        using var buffer = new AlignedBuffer(5 * 4096);
        for (int i = 0; i < 4; i++) Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, i * 4096, 4096, [buffer.Segment(i * 4096, 4096)], (ulong)i)));
        Assert.False(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 0, 4096, [buffer.Segment(4 * 4096, 4096)], 9)));
        Assert.Equal(4, engine.InFlight);
        engine.Submit();
        ReapAll(engine, 4);
        Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 0, 4096, [buffer.Segment(4 * 4096, 4096)], 9)));
        engine.Submit();
        Assert.Equal(new BlockCompletion(9, 4096), One(engine));
    }

    [Theory, MemberData(nameof(Engines))]
    public void Flush_discard_and_zeroes_reach_the_file(string kind)
    {
        string path = Image(1 << 20, fill: 0x5A);
        using var storage = Open(kind, path);
        using var engine = Create(kind, storage, 8);
        using var buffer = new AlignedBuffer(4096);
        buffer.Span.Fill(0xC3);
        engine.Enqueue(new BlockOperation(BlockOperationKind.Write, 0, 4096, [buffer.Segment(0, 4096)], 1, fua: true));
        engine.Submit();
        Assert.Equal(new BlockCompletion(1, 4096), One(engine));
        engine.Enqueue(new BlockOperation(BlockOperationKind.Flush, 0, 0, [], 2));
        engine.Enqueue(new BlockOperation(BlockOperationKind.Discard, 65536, 65536, [], 3));
        engine.Enqueue(new BlockOperation(BlockOperationKind.WriteZeroes, 262144, 8192, [], 4));
        engine.Enqueue(new BlockOperation(BlockOperationKind.WriteZeroesUnmap, 524288, 4096, [], 5));
        engine.Submit();
        var done = ReapAll(engine, 4);
        Assert.Equal([new(2, 0), new(3, 0), new(4, 0), new(5, 0)], done.OrderBy(c => c.Token));

        var file = File.ReadAllBytes(path);
        Assert.Equal(1 << 20, file.Length); // KEEP_SIZE
        Assert.All(file[..4096], b => Assert.Equal(0xC3, b));
        Assert.All(file[65536..131072], b => Assert.Equal(0, b));
        Assert.All(file[262144..270336], b => Assert.Equal(0, b));
        Assert.All(file[524288..528384], b => Assert.Equal(0, b));
        Assert.Equal(0x5A, file[131072]);
        Assert.Equal(0x5A, file[270336]);
        Assert.Equal(0x5A, file[528384]);
    }

    [Theory, MemberData(nameof(Engines))]
    public void A_storage_error_is_a_negative_result_for_that_operation_alone(string kind)
    {
        string path = Image(8192);
        using var storage = Open(kind, path, readOnly: true);
        using var engine = Create(kind, storage, 8);
        using var buffer = new AlignedBuffer(3 * 4096);
        engine.Enqueue(new BlockOperation(BlockOperationKind.Write, 0, 4096, [buffer.Segment(0, 4096)], 1));        // read-only fd: EBADF
        engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 4096, 8192, [buffer.Segment(4096, 8192)], 2));   // short, then end of file
        engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 0, 4096, [buffer.Segment(0, 4096)], 3));         // fine
        engine.Submit();
        var done = ReapAll(engine, 3).OrderBy(c => c.Token).ToArray();
        Assert.Equal(-Ebadf, done[0].Result);
        Assert.Equal(-Eio, done[1].Result);
        Assert.Equal(4096, done[2].Result);
        Assert.Equal(File.ReadAllBytes(path).AsSpan(4096, 4096).ToArray(), buffer.Span.Slice(4096, 4096).ToArray()); // the short part did arrive
    }

    [Theory, MemberData(nameof(Engines))]
    public void More_segments_than_the_engine_takes_is_refused_with_einval(string kind)
    {
        string path = Image(1 << 20);
        using var storage = Open(kind, path);
        using var engine = Create(kind, storage, 2);
        using var buffer = new AlignedBuffer(4096);
        var segments = Enumerable.Range(0, engine.MaxSegments + 1).Select(_ => buffer.Segment(0, 1)).ToArray();
        Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 0, segments.Length, segments, 7)));
        engine.Submit();
        Assert.Equal(new BlockCompletion(7, -Einval), One(engine));
    }

    [Fact]
    public void Threads_cancel_before_a_worker_takes_it_completes_with_ecanceled()
    {
        string path = Image(1 << 20);
        using var storage = Open("threads", path);
        using var engine = storage.CreateQueueEngine(4);
        using var buffer = new AlignedBuffer(4096);
        engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 0, 4096, [buffer.Segment(0, 4096)], 5));
        engine.Cancel(5);
        engine.Cancel(99); // unknown: no-op
        engine.Submit();
        Assert.Equal(new BlockCompletion(5, -Ecanceled), One(engine));
        Assert.All(buffer.Span.ToArray(), b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData("io_uring")]
    [InlineData("threads")]
    public void Cancel_ends_a_long_delay_early_with_the_real_or_cancelled_result(string kind)
    {
        string path = Image(1 << 20);
        using var storage = Open(kind, path);
        // An hour's latency: without the cancel, ReapAll's bound fails the test.
        using var engine = new DelayEngine(storage.CreateQueueEngine(4), TimeSpan.FromHours(1));
        using var buffer = new AlignedBuffer(4096);
        engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 0, 4096, [buffer.Segment(0, 4096)], 5));
        engine.Submit();
        engine.Cancel(5);
        var c = One(engine);
        Assert.Equal(5ul, c.Token);
        Assert.True(c.Result == 4096 || c.Result == -Ecanceled, $"result {c.Result}");
    }

    [Fact]
    public void Io_uring_cancel_of_an_operation_in_flight_still_completes_it()
    {
        string path = Image(1 << 20);
        using var storage = Open("io_uring", path);
        using var engine = storage.CreateQueueEngine(4);
        using var buffer = new AlignedBuffer(4096);
        engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 0, 4096, [buffer.Segment(0, 4096)], 5));
        engine.Cancel(5); // submits the read and its ASYNC_CANCEL together
        engine.Submit();
        var c = One(engine);
        Assert.True(c.Result == 4096 || c.Result == -Ecanceled, $"result {c.Result}");
        Assert.Equal(0, engine.InFlight);
        // The cancel's own completion is not handed out as one of ours.
        Span<BlockCompletion> more = stackalloc BlockCompletion[4];
        Assert.Equal(0, engine.Reap(more));
    }

    [Theory]
    [InlineData("io_uring")]
    [InlineData("threads")]
    public void Delay_holds_each_completion_at_least_its_latency_without_blocking_enqueue(string kind)
    {
        string path = Image(1 << 20);
        using var storage = Open(kind, path);
        var delay = TimeSpan.FromMilliseconds(20);
        using var engine = new DelayEngine(storage.CreateQueueEngine(32), delay);
        using var buffer = new AlignedBuffer(32 * 4096);
        var enqueued = new long[32];
        for (int i = 0; i < 32; i++)
        {
            enqueued[i] = TimerFd.NowNs();
            Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, i * 4096, 4096, [buffer.Segment(i * 4096, 4096)], (ulong)i)));
        }
        Assert.Equal(32, engine.InFlight); // all overlap: none waits for another
        engine.Submit();
        var seen = 0;
        Span<BlockCompletion> batch = stackalloc BlockCompletion[32];
        var bound = Environment.TickCount64 + 20_000;
        while (seen < 32 && Environment.TickCount64 < bound)
        {
            EventFd.WaitAny([engine.CompletionFd], 1000);
            int n = engine.Reap(batch);
            long now = TimerFd.NowNs();
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(4096, batch[i].Result);
                Assert.True(now - enqueued[batch[i].Token] >= delay.Ticks * 100, "released before its latency");
            }
            seen += n;
        }
        Assert.Equal(32, seen);
    }

    [Fact]
    public void Direct_storage_opens_a_second_fd_with_o_direct_that_aligned_requests_use()
    {
        string path = Image(1 << 20);
        using var storage = new FileStorage(path, readOnly: false, direct: true, StorageEngineKind.IoUring);
        var flags = OpenFlagsOf(path);
        Assert.Equal(2, flags.Count);
        Assert.Single(flags, f => (f & 0x4000) != 0); // O_DIRECT is 040000 octal
        using var engine = storage.CreateQueueEngine(4);
        using var buffer = new AlignedBuffer(8192);
        buffer.Span.Fill(0x11);
        engine.Enqueue(new BlockOperation(BlockOperationKind.Write, 4096, 4096, [buffer.Segment(0, 4096)], 1));   // aligned: O_DIRECT
        engine.Enqueue(new BlockOperation(BlockOperationKind.Write, 100, 50, [buffer.Segment(4096 + 3, 50)], 2)); // unaligned: buffered
        engine.Submit();
        Assert.All(ReapAll(engine, 2), c => Assert.True(c.Succeeded));
        var file = File.ReadAllBytes(path);
        Assert.All(file[4096..8192], b => Assert.Equal(0x11, b));
        Assert.All(file[100..150], b => Assert.Equal(0x11, b));
    }

    [Fact]
    public void Without_direct_no_fd_of_the_image_has_o_direct()
    {
        string path = Image(1 << 20);
        using var storage = new FileStorage(path, readOnly: false);
        var flags = OpenFlagsOf(path);
        Assert.Single(flags);
        Assert.Equal(0, flags[0] & 0x4000);
    }

    /// <summary>The fdinfo flags of every descriptor of this process open on <paramref name="path"/>.</summary>
    private static List<int> OpenFlagsOf(string path)
    {
        var result = new List<int>();
        foreach (var link in Directory.GetFiles("/proc/self/fd"))
        {
            string? target;
            try { target = new FileInfo(link).LinkTarget; } catch (IOException) { continue; }
            if (target != path) continue;
            string line = File.ReadLines($"/proc/self/fdinfo/{Path.GetFileName(link)}").First(l => l.StartsWith("flags:"));
            result.Add(Convert.ToInt32(line["flags:".Length..].Trim(), 8));
        }
        return result;
    }
}
