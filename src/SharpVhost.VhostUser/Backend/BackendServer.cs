using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpVhost.Interop;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// Serves one frontend at a time on a Unix socket, as QEMU's backend programs do: listens on a
/// path (replacing a stale socket file) or on an inherited fd, serves a connection until it ends,
/// then listens again. Cancellation stops it; the socket file is removed on the way out.
/// </summary>
public sealed class BackendServer(IVhostUserDevice device, BackendOptions options, ILogger logger)
{
    /// <summary>Raised after each connection ends, with the session that served it (counters, tests).</summary>
    public event Action<BackendSession>? SessionEnded;

    /// <summary>Listens on <paramref name="path"/> until cancelled.</summary>
    public void Run(string path, CancellationToken cancel, Action? listening = null)
    {
        using var listener = Listen(path);
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

    public static Socket Listen(string path)
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
