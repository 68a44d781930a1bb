using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.Fuzz;

/// <summary>
/// Records what a real front-end (QEMU) sends, as a <see cref="SessionTarget"/> input: listens on a
/// socket path, serves the front-end with our block backend through a relay, and writes every
/// front-end message (with its fd count) to a file. Used once to seed the session corpus with real
/// traffic: <c>SharpVhost.Fuzz record &lt;socket-path&gt; &lt;output-file&gt; &lt;seconds&gt;</c>.
/// </summary>
public static class TrafficRecorder
{
    public static int Run(string socketPath, string outputFile, int seconds)
    {
        using var listener = BackendServer.Listen(socketPath);
        Console.Error.WriteLine($"record: listening on {socketPath} for {seconds} s");
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        using var stopAccept = cancel.Token.Register(listener.Close);
        Socket frontEnd;
        try { frontEnd = listener.Accept(); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            Console.Error.WriteLine("record: no front-end connected");
            return 1;
        }

        var recording = new List<byte> { 0 }; // option byte: direct accessor
        var (relayEnd, backendEnd) = UnixSockets.CreatePair();
        using var storage = new RamStorage(16 << 20);
        var device = new BlockDevice(storage, new BlockDeviceOptions());
        using var session = new BackendSession(device, new BackendOptions(), NullLogger.Instance);
        var serve = new Thread(() => session.Serve(backendEnd, cancel.Token)) { IsBackground = true };
        serve.Start();
        var toBackend = new Thread(() => Relay(frontEnd, relayEnd, recording)) { IsBackground = true };
        var toFrontEnd = new Thread(() => Relay(relayEnd, frontEnd, null)) { IsBackground = true };
        toBackend.Start();
        toFrontEnd.Start();
        using (cancel.Token.Register(() => { Shut(frontEnd); Shut(relayEnd); }))
            toBackend.Join();
        Shut(relayEnd);
        Shut(frontEnd);
        toFrontEnd.Join();
        serve.Join();
        frontEnd.Dispose();
        relayEnd.Dispose();
        lock (recording) File.WriteAllBytes(outputFile, [.. recording]);
        Console.Error.WriteLine($"record: wrote {recording.Count} bytes to {outputFile}");
        return 0;
    }

    private static void Shut(Socket s)
    {
        try { s.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
    }

    /// <summary>Copies whole messages (and their fds) from one socket to the other; records them if asked.</summary>
    private static void Relay(Socket from, Socket to, List<byte>? recording)
    {
        var header = new byte[VhostUserHeader.WireSize];
        var fds = new List<int>();
        try
        {
            while (true)
            {
                fds.Clear();
                if (!ReadExactly(from, header, fds)) return;
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(8));
                if (size > VhostUserLimits.MaxPayloadSize) return;
                var message = new byte[VhostUserHeader.WireSize + size];
                header.CopyTo(message, 0);
                if (!ReadExactly(from, message.AsSpan(VhostUserHeader.WireSize), fds)) return;
                if (recording is not null)
                    lock (recording) { recording.Add((byte)Math.Min(fds.Count, VhostUserLimits.MaxFds)); recording.AddRange(message); }
                UnixSockets.SendWithFds(to, message, fds.ToArray());
                foreach (int fd in fds) UnixSockets.CloseFd(fd);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException) { }
        finally
        {
            foreach (int fd in fds) UnixSockets.CloseFd(fd);
        }
    }

    private static bool ReadExactly(Socket from, Span<byte> buffer, List<int> fds)
    {
        Span<int> received = stackalloc int[VhostUserLimits.MaxFds];
        int got = 0;
        while (got < buffer.Length)
        {
            int n = UnixSockets.ReceiveWithFds(from, buffer[got..], received, out int count);
            for (int i = 0; i < count; i++) fds.Add(received[i]);
            if (n == 0) return false;
            got += n;
        }
        return true;
    }
}
