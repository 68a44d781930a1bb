using SharpVhost.Devices.Block;
using SharpVhost.Devices.Block.Nbd;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;
using SharpVhost.Interop;
using static SharpVhost.Integration.Tests.Block.Nbd.NbdEngineHarness;

namespace SharpVhost.Integration.Tests.Block.Nbd;

/// <summary>
/// The NBD queue engine driven directly against real servers (nbdkit, qemu-nbd) that the tests start:
/// handshake, many requests in flight through scattered segments, holes, qcow2 checked by qemu-img,
/// injected errors, and a server killed during I/O. Fails, never skips, without the servers.
/// </summary>
[Collection("nbd servers")] // one at a time: nbdkit was seen ending on SIGTERM within 50 ms of its start while another NBD class ran beside it
public sealed class NbdEngineTests
{
    private const int Mib = 1 << 20;

    [Fact]
    public async Task Handshake_learns_size_flags_and_block_size_constraints()
    {
        using var temp = new TempDirectory();
        var socket = temp.File("nbd.sock");
        await using (var server = await NbdServers.NbdkitAsync(socket, temp.Path, "nbdkit-bs",
            "--filter=blocksize-policy", "memory", "64M", "blocksize-minimum=4096", "blocksize-preferred=65536", "blocksize-maximum=1M"))
        using (var engine = Open(NbdServers.UriFor(socket), depth: 4))
        {
            var export = engine.Export;
            Assert.Equal(64L * Mib, export.Size);
            Assert.False(export.ReadOnly);
            Assert.True(export.StructuredReplies, "nbdkit acknowledges NBD_OPT_STRUCTURED_REPLY");
            Assert.True(export.CanFlush && export.CanTrim && export.CanWriteZeroes, export.Describe());
            Assert.Equal((4096u, 65536u, (uint)Mib), (export.MinimumBlockSize, export.PreferredBlockSize, export.MaximumPayload));
            // A request over the server's payload limit is refused here, not sent.
            using var big = new NativeBuffer(2 * Mib);
            Assert.Equal(-22, RunOne(engine, BlockOperationKind.Read, 0, big, 2 * Mib));
        }

        await using (var server = await NbdServers.NbdkitAsync(socket, temp.Path, "nbdkit-ro", "-r", "memory", "1M"))
        using (var engine = Open(NbdServers.UriFor(socket), depth: 4))
        {
            Assert.True(engine.Export.ReadOnly);
            using var buffer = new NativeBuffer(4096);
            Assert.Equal(4096, RunOne(engine, BlockOperationKind.Read, 0, buffer, 4096));
            Assert.Equal(-1, RunOne(engine, BlockOperationKind.Write, 0, buffer, 4096)); // EPERM, never sent
            // And the storage built on it is a read-only disk of the server's size.
            using var storage = new NbdStorage(NbdUri.Parse(NbdServers.UriFor(socket)), new NbdClientOptions(), new ListLogger());
            Assert.True(storage.ReadOnly);
            Assert.Equal(Mib, storage.Capacity);
            var device = new BlockDevice(storage, new BlockDeviceOptions());
            Assert.NotEqual(0ul, device.Features & (1ul << VirtioBlk.FeatureReadOnly));
            Assert.Equal(0ul, device.Features & (1ul << VirtioBlk.FeatureDiscard | 1ul << VirtioBlk.FeatureWriteZeroes));
        }
    }

    [Fact]
    public async Task Many_requests_in_flight_through_scattered_segments_round_trip()
    {
        using var temp = new TempDirectory();
        var socket = temp.File("nbd.sock");
        await using var server = await NbdServers.NbdkitAsync(socket, temp.Path, "nbdkit-mem", "--threads", "16", "memory", "64M");
        const int depth = 32, each = 65536;
        using var engine = Open(NbdServers.UriFor(socket), depth);
        using var source = new NativeBuffer(depth * each);
        using var back = new NativeBuffer(depth * each);
        Fill(source.Span, 7);
        // Each request in three uneven pieces, at offsets spread over the disk.
        Span<IoSegment> pieces = stackalloc IoSegment[3];
        for (int round = 0; round < 2; round++)
        {
            var buffer = round == 0 ? source : back;
            for (int i = 0; i < depth; i++)
            {
                nint at = buffer.Address + i * each;
                pieces[0] = new IoSegment(at, 1000);
                pieces[1] = new IoSegment(at + 1000, 20000);
                pieces[2] = new IoSegment(at + 21000, each - 21000);
                var kind = round == 0 ? BlockOperationKind.Write : BlockOperationKind.Read;
                Assert.True(engine.Enqueue(new BlockOperation(kind, (long)i * Mib + 512, each, pieces, (ulong)i)));
            }
            Assert.Equal(depth, engine.InFlight);
            Assert.False(engine.Enqueue(new BlockOperation(BlockOperationKind.Flush, 0, 0, [], 999)), "more than Depth in flight");
            engine.Submit();
            var results = ReapAll(engine, depth);
            Assert.All(Enumerable.Range(0, depth), i => Assert.Equal(each, results[(ulong)i]));
            Assert.Equal(0, engine.InFlight);
        }
        Assert.True(source.Span.SequenceEqual(back.Span), "data read back differs from data written");
        Assert.Equal(0, RunOne(engine, BlockOperationKind.Flush, 0, null, 0));
        Assert.Equal(0, engine.ProtocolFailures);
    }

    [Fact]
    public async Task Qcow2_through_qemu_nbd_matches_the_expected_raw_image()
    {
        using var temp = new TempDirectory();
        var socket = temp.File("nbd.sock");
        var qcow2 = temp.File("disk.qcow2");
        var (code, output) = await NbdServers.QemuImgAsync("create", "-q", "-f", "qcow2", qcow2, "16M");
        Assert.True(code == 0, output);
        var expected = new byte[16 * Mib];
        await using (var server = await NbdServers.QemuNbdAsync(socket, qcow2, "qcow2", temp.Path, "qemu-nbd"))
        using (var engine = Open(NbdServers.UriFor(socket), depth: 16))
        using (var buffer = new NativeBuffer(Mib))
        {
            Assert.True(engine.Export.StructuredReplies);
            (long Offset, int Length)[] writes = [(0, 4096), (65536 + 512, 12288), (5 * Mib, Mib), (16 * Mib - 4096, 4096)];
            for (int i = 0; i < writes.Length; i++)
            {
                var (offset, length) = writes[i];
                Fill(buffer.Span[..length], 100 + i);
                buffer.Span[..length].CopyTo(expected.AsSpan((int)offset));
                Assert.Equal(length, RunOne(engine, BlockOperationKind.Write, offset, buffer, length, (ulong)i));
            }
            // Zeroing without unmap (NO_HOLE) and with it, inside written data.
            Assert.Equal(0, RunOne(engine, BlockOperationKind.WriteZeroes, 5 * Mib, null, 4096));
            Assert.Equal(0, RunOne(engine, BlockOperationKind.WriteZeroesUnmap, 5 * Mib + 65536, null, 65536));
            expected.AsSpan(5 * Mib, 4096).Clear();
            expected.AsSpan(5 * Mib + 65536, 65536).Clear();
            Assert.Equal(0, RunOne(engine, BlockOperationKind.Flush, 0, null, 0));
            // Reads of unallocated clusters come back as holes (OFFSET_HOLE): the buffer is zeroed, not left as it was.
            buffer.Span.Fill(0xAA);
            Assert.Equal(Mib, RunOne(engine, BlockOperationKind.Read, 8 * Mib, buffer, Mib));
            Assert.True(buffer.Span.IndexOfAnyExcept((byte)0) < 0, "a hole read back as non-zero bytes");
            // And a read spanning data and a hole.
            Assert.Equal(Mib, RunOne(engine, BlockOperationKind.Read, 5 * Mib + Mib / 2, buffer, Mib));
            Assert.True(buffer.Span.SequenceEqual(expected.AsSpan(5 * Mib + Mib / 2, Mib)), "data + hole read differs");
        }
        var raw = temp.File("expected.raw");
        await File.WriteAllBytesAsync(raw, expected);
        (code, output) = await NbdServers.QemuImgAsync("compare", "-f", "qcow2", "-F", "raw", qcow2, raw);
        Assert.True(code == 0, "qemu-img compare: " + output);
    }

    [Fact]
    public async Task Injected_write_errors_fail_those_requests_only()
    {
        using var temp = new TempDirectory();
        var socket = temp.File("nbd.sock");
        await using var server = await NbdServers.NbdkitAsync(socket, temp.Path, "nbdkit-err",
            "--filter=error", "memory", "8M", "error-pwrite=EIO", "error-pwrite-rate=100%");
        var log = new ListLogger();
        using var engine = Open(NbdServers.UriFor(socket), depth: 8, log: log);
        using var buffer = new NativeBuffer(8 * 4096);
        for (int i = 0; i < 8; i++)
        {
            var kind = i % 2 == 0 ? BlockOperationKind.Write : BlockOperationKind.Read;
            Assert.True(engine.Enqueue(new BlockOperation(kind, i * 4096, 4096, [new IoSegment(buffer.Address + i * 4096, 4096)], (ulong)i)));
        }
        engine.Submit();
        var results = ReapAll(engine, 8);
        for (int i = 0; i < 8; i++) Assert.Equal(i % 2 == 0 ? -5 : 4096, results[(ulong)i]);
        // The connection stayed up: an error reply is an answer, not a protocol failure.
        Assert.Equal(0, engine.ProtocolFailures);
        Assert.Equal(0, engine.Reconnects);
        Assert.Equal(0, RunOne(engine, BlockOperationKind.Flush, 0, null, 0, token: 50));
    }

    /// <summary>
    /// A server that goes away during I/O, killed (SIGKILL) or stopped cleanly (SIGTERM: nbdkit's delay filter
    /// sleeps with nbdkit_nanosleep, which the signal ends with an ESHUTDOWN reply for every read in flight).
    /// Either way the connection has ended: without a reconnect delay the reads fail with EIO and later requests
    /// succeed once the engine has reconnected by itself; with one, an acknowledged write survives and the reads
    /// in flight are sent again to the restarted server and return its data.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Server_gone_during_io_fails_requests_at_once_or_keeps_them_for_the_reconnect(bool graceful)
    {
        using var temp = new TempDirectory();
        var socket = temp.File("nbd.sock");
        var file = temp.File("disk.raw");
        using (var f = File.Create(file)) f.SetLength(8 * Mib);
        string[] slow = ["--filter=delay", "file", file, "delay-read=2"];
        string how = graceful ? "term" : "kill";
        async Task StopAsync(BackendProcess server)
        {
            if (graceful) await Task.Delay(300); // the reads reach the filter's sleep
            else await server.CrashAsync();
            await server.DisposeAsync(); // SIGTERM, if still running
        }

        var server = await NbdServers.NbdkitAsync(socket, temp.Path, $"nbdkit-{how}1", slow);
        using (var engine = Open(NbdServers.UriFor(socket), depth: 8))
        using (var buffer = new NativeBuffer(8 * 4096))
        {
            for (int i = 0; i < 4; i++) Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, i * 4096, 4096, [new IoSegment(buffer.Address + i * 4096, 4096)], (ulong)i)));
            engine.Submit();
            await StopAsync(server);
            Assert.All(ReapAll(engine, 4).Values, r => Assert.Equal(-5, r));
            Assert.Equal(0, engine.ProtocolFailures);
            server = await NbdServers.NbdkitAsync(socket, temp.Path, $"nbdkit-{how}1b", "file", file);
            WaitUntil(() => engine.Reconnects > 0, "reconnect");
            Assert.Equal(4096, RunOne(engine, BlockOperationKind.Write, 0, buffer, 4096, token: 10));
        }
        await server.DisposeAsync();

        server = await NbdServers.NbdkitAsync(socket, temp.Path, $"nbdkit-{how}2", slow);
        var log = new ListLogger();
        using (var engine = Open(NbdServers.UriFor(socket), depth: 8, new NbdClientOptions { ReconnectDelay = TimeSpan.FromSeconds(60) }, log))
        using (var written = new NativeBuffer(4096))
        using (var back = new NativeBuffer(4 * 4096))
        {
            Fill(written.Span, 3);
            Assert.Equal(4096, RunOne(engine, BlockOperationKind.Write, 65536, written, 4096));
            for (int i = 0; i < 4; i++) Assert.True(engine.Enqueue(new BlockOperation(BlockOperationKind.Read, 65536, 4096, [new IoSegment(back.Address + i * 4096, 4096)], (ulong)i)));
            engine.Submit();
            await StopAsync(server);
            server = await NbdServers.NbdkitAsync(socket, temp.Path, $"nbdkit-{how}2b", "file", file);
            Assert.All(ReapAll(engine, 4).Values, r => Assert.Equal(4096, r));
            for (int i = 0; i < 4; i++) Assert.True(back.Span.Slice(i * 4096, 4096).SequenceEqual(written.Span), $"read {i} after the reconnect");
            Assert.Equal(1, engine.Reconnects);
            Assert.Equal(0, engine.Errors);
            if (graceful) Assert.Contains(log.Lines, l => l.Contains("shutting down (ESHUTDOWN)", StringComparison.Ordinal));
        }
        await server.DisposeAsync();
    }
}
