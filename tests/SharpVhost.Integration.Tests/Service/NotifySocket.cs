using System.Net.Sockets;
using System.Text;

namespace SharpVhost.Integration.Tests.Service;

/// <summary>
/// The test's own stand-in for systemd's notification socket: a datagram socket in the abstract
/// namespace (NOTIFY_SOCKET=@name, as systemd itself uses) that collects what the service sends.
/// </summary>
public sealed class NotifySocket : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);

    public NotifySocket()
    {
        var name = "sharpvhost-test-" + Guid.NewGuid().ToString("N")[..12];
        _socket.Bind(new UnixDomainSocketEndPoint("\0" + name));
        Address = "@" + name;
    }

    /// <summary>The value for NOTIFY_SOCKET.</summary>
    public string Address { get; }

    /// <summary>The next datagram's assignments (READY=1, MAINPID=...), or a TimeoutException.</summary>
    public async Task<Dictionary<string, string>> ReceiveAsync(TimeSpan timeout)
    {
        var buffer = new byte[4096];
        using var bounded = new CancellationTokenSource(timeout);
        int n;
        try { n = await _socket.ReceiveAsync(buffer, SocketFlags.None, bounded.Token); }
        catch (OperationCanceledException) { throw new TimeoutException($"nothing arrived on NOTIFY_SOCKET {Address} within {timeout}"); }
        return Encoding.UTF8.GetString(buffer, 0, n).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : "");
    }

    public void Dispose() => _socket.Dispose();
}
