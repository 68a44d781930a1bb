using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpVhost.Interop;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// Serves one frontend at a time on a Unix socket, as QEMU's backend programs do: listens on a
/// path (replacing a stale socket file) or on an inherited fd, serves a connection until it ends,
/// then listens again. Cancellation stops it; the socket file is removed on the way out.
/// In client mode (<see cref="RunClient"/>) it connects instead to a socket the frontend listens on
/// (QEMU's <c>-chardev socket,server=on</c>, libvirt's <c>mode='server'</c>, Open vSwitch's
/// dpdkvhostuserclient) and connects again whenever that connection ends.
/// </summary>
public sealed class BackendServer(IVhostUserDevice device, BackendOptions options, ILogger logger)
{
    /// <summary>Raised after each connection ends, with the session that served it (counters, tests).</summary>
    public event Action<BackendSession>? SessionEnded;

    /// <summary>Longest wait between two connection attempts in client mode (the first retry comes sooner).</summary>
    public static readonly TimeSpan MaxReconnectDelay = TimeSpan.FromSeconds(1);

    /// <summary>Listens on <paramref name="path"/> until cancelled; <paramref name="access"/> sets the socket file's mode and group before it listens.</summary>
    public void Run(string path, CancellationToken cancel, Action? listening = null, SocketFileAccess? access = null)
    {
        using var listener = Listen(path, access);
        logger.LogInformation("{Kind} backend listening on {Path}", device.Kind, path);
        listening?.Invoke();
        try { AcceptLoop(listener, cancel); }
        finally { TryDelete(path); }
    }

    /// <summary>Serves an inherited socket: a listening one like a path, a connected one once.</summary>
    public void Run(int fd, CancellationToken cancel)
    {
        using var socket = UnixSockets.FromFd(fd);
        if ((int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.AcceptConnection)! != 0) AcceptLoop(socket, cancel);
        else ServeConnection(socket, cancel);
    }

    /// <summary>
    /// Connects to the frontend's socket at <paramref name="path"/>, serves that connection, and
    /// connects again when it ends (the frontend restarted or reset the device), until cancelled.
    /// A missing or refusing socket is retried, quickly at first, then every <see cref="MaxReconnectDelay"/>.
    /// </summary>
    public void RunClient(string path, CancellationToken cancel)
    {
        logger.LogInformation("{Kind} backend connecting to {Path} (client mode)", device.Kind, path);
        var delay = TimeSpan.FromMilliseconds(50);
        bool waitingLogged = false;
        while (!cancel.IsCancellationRequested)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Connect(new UnixDomainSocketEndPoint(path));
            }
            catch (SocketException e)
            {
                socket.Dispose();
                if (!waitingLogged) logger.LogInformation("waiting for the frontend to listen on {Path} ({Reason})", path, e.SocketErrorCode);
                waitingLogged = true;
                if (cancel.WaitHandle.WaitOne(delay)) return;
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxReconnectDelay.Ticks));
                continue;
            }
            waitingLogged = false;
            delay = TimeSpan.FromMilliseconds(50);
            logger.LogInformation("connected to frontend at {Path}", path);
            using var stop = cancel.Register(() => { try { socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { } });
            try
            {
                using (socket) ServeConnection(socket, cancel);
                logger.LogInformation("frontend at {Path} disconnected; connecting again", path);
            }
            catch (Exception e) when (!cancel.IsCancellationRequested)
            {
                logger.LogError(e, "connection failed; connecting again");
            }
        }
    }

    public static Socket Listen(string path, SocketFileAccess? access = null)
    {
        if (File.Exists(path))
        {
            if (IsServed(path)) throw new IOException($"{path} is in use by another backend");
            File.Delete(path); // a stale socket left by a backend that died
        }
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            // Between bind and listen nobody can connect yet: the mode and group are in place first.
            access?.ApplyTo(path);
            listener.Listen(1);
            return listener;
        }
        catch
        {
            listener.Dispose();
            throw;
        }
    }

    private static bool IsServed(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { probe.Connect(new UnixDomainSocketEndPoint(path)); return true; }
        catch (SocketException) { return false; }
    }

    private void AcceptLoop(Socket listener, CancellationToken cancel)
    {
        using var stop = cancel.Register(() => { try { listener.Shutdown(SocketShutdown.Both); } catch (SocketException) { } listener.Close(); });
        while (!cancel.IsCancellationRequested)
        {
            Socket connection;
            try { connection = listener.Accept(); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (cancel.IsCancellationRequested) return;
                throw;
            }
            logger.LogInformation("frontend connected");
            try
            {
                using (connection) ServeConnection(connection, cancel);
                logger.LogInformation("frontend disconnected");
            }
            catch (Exception e) when (!cancel.IsCancellationRequested)
            {
                // One connection's failure (a bug it provoked) must not take the backend away from the next frontend.
                logger.LogError(e, "connection failed; listening for the next frontend");
            }
        }
    }

    private void ServeConnection(Socket connection, CancellationToken cancel)
    {
        using var session = new BackendSession(device, options, logger);
        try { session.Serve(connection, cancel); }
        finally { SessionEnded?.Invoke(session); }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
