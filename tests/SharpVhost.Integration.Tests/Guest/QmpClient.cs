using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpVhost.Integration.Tests.Guest;

/// <summary>
/// A minimal QMP client (QEMU's JSON monitor) over a Unix socket: one command at a time, each
/// answered by a "return" or an "error" object; asynchronous events in between are skipped.
/// Start QEMU with <c>-qmp unix:PATH,server=on,wait=off</c>.
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly StreamReader _reader;
    private readonly Stream _stream;

    private QmpClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _reader = new StreamReader(_stream, new UTF8Encoding(false));
    }

    /// <summary>
    /// Connects (retrying until QEMU listens), reads the greeting and leaves capabilities
    /// negotiation mode. Fails after <paramref name="timeout"/>, or at once if <paramref name="qemuGone"/> says QEMU exited.
    /// </summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, TimeSpan timeout, Func<bool>? qemuGone = null)
    {
        using var cancel = new CancellationTokenSource(timeout);
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancel.Token);
                var client = new QmpClient(socket);
                try
                {
                    // QEMU 7.2 can emit an event ahead of the greeting: one raised while the main loop has
                    // accepted us but not yet run the monitor's open handler (an -incoming QEMU's MIGRATION
                    // "setup" was seen so under load). Events carry nothing we need here.
                    var greeting = await client.ReadMessageAsync(cancel.Token);
                    while (greeting["event"] is not null) greeting = await client.ReadMessageAsync(cancel.Token);
                    if (greeting["QMP"] is null) throw new InvalidOperationException($"QMP greeting expected, got {greeting.ToJsonString()}");
                    await client.ExecuteAsync("qmp_capabilities", null, timeout);
                    return client;
                }
                catch
                {
                    await client.DisposeAsync();
                    throw;
                }
            }
            catch (Exception e) when (e is SocketException && !cancel.IsCancellationRequested)
            {
                socket.Dispose();
                if (qemuGone?.Invoke() == true) throw new InvalidOperationException($"QEMU exited before its QMP socket {socketPath} accepted");
                await Task.Delay(100, CancellationToken.None);
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
                throw new TimeoutException($"QMP socket {socketPath} did not answer within {timeout}");
            }
        }
    }

    /// <summary>Runs <paramref name="command"/> and returns its "return" value; throws on an "error" answer or a timeout.</summary>
    public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments = null, TimeSpan? timeout = null)
    {
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        var request = new JsonObject { ["execute"] = command };
        if (arguments is not null) request["arguments"] = arguments;
        var bytes = Encoding.UTF8.GetBytes(request.ToJsonString() + "\n");
        try
        {
            await _stream.WriteAsync(bytes, cancel.Token);
            while (true)
            {
                var answer = await ReadMessageAsync(cancel.Token);
                if (answer["event"] is not null) continue;
                if (answer["error"] is { } error) throw new QmpException(command, error.ToJsonString());
                if (answer.ContainsKey("return")) return answer["return"];
                throw new InvalidOperationException($"unexpected QMP answer to {command}: {answer.ToJsonString()}");
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"QMP command {command} got no answer within {timeout ?? TimeSpan.FromSeconds(60)}");
        }
    }

    private async Task<JsonObject> ReadMessageAsync(CancellationToken cancel)
    {
        while (true)
        {
            var line = await _reader.ReadLineAsync(cancel) ?? throw new IOException("QMP connection closed");
            if (string.IsNullOrWhiteSpace(line)) continue;
            return JsonNode.Parse(line) as JsonObject ?? throw new InvalidOperationException($"QMP sent a non-object: {line}");
        }
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _stream.Dispose();
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>QEMU answered a QMP command with an error.</summary>
public sealed class QmpException(string command, string error) : Exception($"QMP {command} failed: {error}");
