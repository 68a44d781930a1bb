using System.Buffers.Binary;
using System.Net.Sockets;
using SharpVhost.Devices.Block;
using SharpVhost.Devices.Block.Nbd;
using SharpVhost.Integration.Tests.Support;
using SharpVhost.Interop;
using static SharpVhost.Integration.Tests.Block.Nbd.NbdEngineHarness;

namespace SharpVhost.Integration.Tests.Block.Nbd;

/// <summary>
/// A fake NBD server in the test process that completes the handshake and then answers its first
/// connection's first read badly. The client must fail that request with EIO, say in its log why it
/// dropped the connection, and serve the next request on a new connection (which behaves).
/// </summary>
[Collection("nbd servers")] // one at a time: nbdkit was seen ending on SIGTERM within 50 ms of its start while another NBD class ran beside it
public sealed class HostileNbdServerTests
{
    private const long ExportSize = 1 << 20;
    private const byte Fill = 0x5c;

    [Theory]
    [InlineData("unknown-handle", "unknown handle", true)]
    [InlineData("never-sent-handle", "unknown handle", true)]
    [InlineData("oversized-chunk", "data chunk of", true)]
    [InlineData("chunk-outside-request", "outside its read", true)]
    [InlineData("bad-magic", "bad reply magic", true)]
    [InlineData("malformed-error-chunk", "malformed error chunk", true)]
    [InlineData("stall-mid-reply", "stopped for", true)]
    [InlineData("silent", "no reply for", true)]
    [InlineData("half-covered-read", "covered", false)]
    public async Task A_bad_reply_fails_its_request_and_the_next_connection_serves(string misbehaviour, string logged, bool drops)
    {
        using var temp = new TempDirectory();
        await using var server = new FakeServer(temp.File("fake.sock"), misbehaviour, everyConnection: false);

        var log = new ListLogger();
        var options = new NbdClientOptions { ReplyTimeout = TimeSpan.FromMilliseconds(300) };
        using (var engine = Open(server.Uri, depth: 4, options, log))
        using (var buffer = new NativeBuffer(4096))
        {
            Assert.Equal(-5, RunOne(engine, BlockOperationKind.Read, 8192, buffer, 4096));
            Assert.Equal(drops ? 1 : 0, engine.ProtocolFailures);
            Assert.Contains(log.Lines, line => line.Contains(logged, StringComparison.Ordinal));
            if (drops)
            {
                Assert.Contains(log.Lines, line => line.StartsWith("Error:", StringComparison.Ordinal) && line.Contains("dropping the connection", StringComparison.Ordinal));
                WaitUntil(() => engine.Reconnects == 1, "reconnect to the fake server");
            }
            buffer.Span.Clear();
            Assert.Equal(4096, RunOne(engine, BlockOperationKind.Read, 0, buffer, 4096, token: 2));
            Assert.True(buffer.Span.IndexOfAnyExcept(Fill) < 0, "the good connection's data");
        }
    }

    [Fact]
    public async Task A_server_answering_eshutdown_forever_fails_the_request_once_the_reconnect_delay_has_passed()
    {
        using var temp = new TempDirectory();
        await using var server = new FakeServer(temp.File("fake.sock"), "eshutdown", everyConnection: true);

        var log = new ListLogger();
        using (var engine = Open(server.Uri, depth: 4, new NbdClientOptions { ReconnectDelay = TimeSpan.FromSeconds(1) }, log))
        using (var buffer = new NativeBuffer(4096))
        {
            // Each ESHUTDOWN ends the connection and the read goes to the next one, until the second since
            // its first loss is over; then it fails like any request the reconnect delay could not save.
            Assert.Equal(-5, RunOne(engine, BlockOperationKind.Read, 0, buffer, 4096));
            Assert.True(engine.Reconnects >= 1, $"{engine.Reconnects} reconnects");
            Assert.Equal(0, engine.ProtocolFailures);
            Assert.Contains(log.Lines, line => line.Contains("shutting down (ESHUTDOWN)", StringComparison.Ordinal));
        }
    }

    /// <summary>The fake server on a Unix socket, serving until disposed; misbehaving on its first connection, or on every one.</summary>
    private sealed class FakeServer : IAsyncDisposable
    {
        private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _serving;

        public FakeServer(string path, string misbehaviour, bool everyConnection)
        {
            Uri = $"nbd+unix:///?socket={path}";
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            _listener.Listen();
            _serving = Task.Run(() => Serve(_listener, misbehaviour, _stop.Token, everyConnection));
        }

        public string Uri { get; }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            _listener.Close();
            await _serving;
            _stop.Dispose();
        }
    }

    private static void Serve(Socket listener, string misbehaviour, CancellationToken stop, bool everyConnection)
    {
        var held = new List<Socket>(); // misbehaving connections stay open: the client must notice by itself
        try
        {
            for (int connection = 0; !stop.IsCancellationRequested; connection++)
            {
                Socket client;
                try { client = listener.Accept(); }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { return; }
                held.Add(client);
                int number = connection;
                _ = Task.Run(() =>
                {
                    try { Session(client, number == 0 || everyConnection ? misbehaviour : null); }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException) { }
                });
            }
        }
        finally
        {
            foreach (var s in held) s.Dispose();
        }
    }

    private static void Session(Socket s, string? misbehaviour)
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, 0x4e42444d41474943);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), 0x49484156454f5054);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), 3);
        s.Send(greeting);
        Receive(s, 4);
        while (true)
        {
            var option = Receive(s, 16);
            uint code = BinaryPrimitives.ReadUInt32BigEndian(option.AsSpan(8));
            Receive(s, (int)BinaryPrimitives.ReadUInt32BigEndian(option.AsSpan(12)));
            if (code == 7) // GO: the export, then ACK
            {
                var info = new byte[12];
                BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), ExportSize);
                BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), 1 | 4);
                OptionReply(s, code, 3, info);
                OptionReply(s, code, 1, []);
                break;
            }
            OptionReply(s, code, 1, []); // structured replies: yes
        }
        bool first = true;
        while (true)
        {
            var request = Receive(s, 28);
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(request.AsSpan(6));
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(8));
            ulong offset = BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(16));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(request.AsSpan(24));
            if (type == 1) Receive(s, (int)length);
            if (type != 0) { s.Send(SimpleReply(cookie, 0)); continue; }
            if (misbehaviour == "eshutdown") { s.Send(SimpleReply(cookie, 108)); continue; } // every read, on every connection
            if (first && misbehaviour is not null)
            {
                first = false;
                Misbehave(s, misbehaviour, cookie, offset, length);
                continue;
            }
            s.Send(Chunk(1, 1, cookie, [.. BigEndian(offset), .. Enumerable.Repeat(Fill, (int)length)]));
        }
    }

    private static void Misbehave(Socket s, string how, ulong cookie, ulong offset, uint length)
    {
        switch (how)
        {
            case "unknown-handle": s.Send(SimpleReply(cookie ^ 0xdead_0000_0000, 0)); break;
            case "never-sent-handle": s.Send(Chunk(1, 0, 3, [])); break; // slot 3 never used
            case "oversized-chunk": s.Send(Chunk(1, 1, cookie, [.. BigEndian(offset), .. new byte[length + 4096]])); break;
            case "chunk-outside-request": s.Send(Chunk(1, 1, cookie, [.. BigEndian(offset + 512), .. new byte[length]])); break;
            case "bad-magic": s.Send(new byte[16]); break;
            case "malformed-error-chunk":
            {
                byte[] body = [0, 0, 0, 5, 0x10, 0x00]; // EIO, a 4096-byte message in a 6-byte chunk
                s.Send(Chunk(1, 0x8001, cookie, body));
                break;
            }
            case "stall-mid-reply": s.Send(Chunk(1, 1, cookie, [.. BigEndian(offset), .. new byte[length]])[..30]); break;
            case "silent": break;
            case "half-covered-read":
                s.Send(Chunk(0, 1, cookie, [.. BigEndian(offset), .. new byte[length / 2]]));
                s.Send(Chunk(1, 0, cookie, []));
                break;
        }
    }

    private static byte[] BigEndian(ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        return b;
    }

    private static byte[] SimpleReply(ulong cookie, uint error)
    {
        var r = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(r, 0x67446698);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), cookie);
        return r;
    }

    private static byte[] Chunk(ushort flags, ushort type, ulong cookie, byte[] payload)
    {
        var r = new byte[20 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(r, 0x668e33ef);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(16), (uint)payload.Length);
        payload.CopyTo(r, 20);
        return r;
    }

    private static void OptionReply(Socket s, uint option, uint type, byte[] data)
    {
        var r = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(r, 0x0003e889045565a9);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(16), (uint)data.Length);
        data.CopyTo(r, 20);
        s.Send(r);
    }

    private static byte[] Receive(Socket s, int length)
    {
        var buffer = new byte[length];
        for (int done = 0; done < length;)
        {
            int n = s.Receive(buffer, done, length - done, SocketFlags.None);
            if (n == 0) throw new EndOfStreamException();
            done += n;
        }
        return buffer;
    }
}
