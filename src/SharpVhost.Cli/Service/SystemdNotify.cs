using System.Net.Sockets;
using System.Text;

namespace SharpVhost.Cli.Service;

/// <summary>
/// sd_notify(3): state lines ("READY=1", "STOPPING=1", "STATUS=...") sent as one datagram to the
/// Unix socket named by NOTIFY_SOCKET, which a Type=notify service's manager (or a test) listens on.
/// A name starting with '@' is in the abstract namespace. Without NOTIFY_SOCKET it does nothing.
/// </summary>
internal sealed class SystemdNotify : IDisposable
{
    private readonly Socket? _socket;
    private readonly UnixDomainSocketEndPoint? _target;

    private SystemdNotify(string? address)
    {
        if (string.IsNullOrEmpty(address)) return;
        _target = new UnixDomainSocketEndPoint(address[0] == '@' ? "\0" + address[1..] : address);
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    }

    /// <summary>Reads NOTIFY_SOCKET and removes it from the environment, as sd_notify's unset_environment does.</summary>
    public static SystemdNotify FromEnvironment()
    {
        var address = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        Environment.SetEnvironmentVariable("NOTIFY_SOCKET", null);
        return new SystemdNotify(address);
    }

    public bool Enabled => _socket is not null;

    /// <summary>Sends <paramref name="state"/>; a manager that went away is not our failure (false is returned).</summary>
    public bool Send(string state)
    {
        if (_socket is null) return false;
        try
        {
            _socket.SendTo(Encoding.UTF8.GetBytes(state), _target!);
            return true;
        }
        catch (SocketException) { return false; }
    }

    public void Dispose() => _socket?.Dispose();
}
