using System.Collections.Concurrent;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpVhost.Devices.Block;
using SharpVhost.VhostUser.Backend;

namespace SharpVhost.Tests.Backend;

/// <summary>
/// A <see cref="BackendServer"/> running on its own thread on a unique temporary socket path, as
/// <c>sharpvhost blk</c> runs it. Everything a test does with it is bounded in time.
/// </summary>
internal sealed class TestServer : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private readonly bool _ownsDir;
    private int _sessionsEnded;

    public string Dir { get; }
    public string SocketPath { get; }
    public BackendServer Server { get; }
    public IVhostUserDevice Device { get; }
    /// <summary>What <see cref="BackendServer.Run(string, CancellationToken, Action?)"/> threw, if anything.</summary>
    public Exception? Failure { get; private set; }
    public ConcurrentQueue<BackendSession> EndedSessions { get; } = new();
    /// <summary>Everything the server logged at warning level or above.</summary>
    public RecordingLogger Log { get; } = new();
    public int SessionsEnded => Volatile.Read(ref _sessionsEnded);
    public bool Stopped { get; private set; }

    public TestServer(IVhostUserDevice device, BackendOptions? options = null, string? socketPath = null)
    {
        Device = device;
        if (socketPath is null)
        {
            Dir = Directory.CreateTempSubdirectory("sv-backend-").FullName;
            SocketPath = Path.Combine(Dir, "blk.sock");
            _ownsDir = true;
        }
        else
        {
            Dir = Path.GetDirectoryName(socketPath)!;
            SocketPath = socketPath;
        }
        Server = new BackendServer(device, options ?? new BackendOptions(), Log);
        Server.SessionEnded += s =>
        {
            EndedSessions.Enqueue(s);
            Interlocked.Increment(ref _sessionsEnded);
        };
        using var listening = new ManualResetEventSlim();
        _thread = new Thread(() =>
        {
            try { Server.Run(SocketPath, _stop.Token, listening.Set); }
            catch (Exception e) { Failure = e; }
            finally { listening.Set(); }
        })
        { IsBackground = true, Name = "test-backend" };
        _thread.Start();
        Assert.True(listening.Wait(Timeout), "backend did not start listening");
    }

    /// <summary>A block device over a RAM disk, the usual device under test.</summary>
    public static TestServer Ram(int queues = 1, long capacity = 8 << 20, BackendOptions? options = null)
        => new(new BlockDevice(new RamStorage(capacity), new BlockDeviceOptions { NumQueues = queues, Serial = "hostile-test" }), options);

    /// <summary>A raw connected socket with send and receive timeouts (no test can hang on it).</summary>
    public Socket ConnectRaw()
    {
        NoteConnection();
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(SocketPath));
            socket.ReceiveTimeout = (int)Timeout.TotalMilliseconds;
            socket.SendTimeout = (int)Timeout.TotalMilliseconds;
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private int _connections;

    /// <summary>Connections made through <see cref="ConnectRaw"/> or noted with <see cref="NoteConnection"/>.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Counts a connection made some other way (e.g. by <c>BlockClient.Connect</c>).</summary>
    public void NoteConnection() => Interlocked.Increment(ref _connections);

    /// <summary>Waits until every counted connection has been served to the end.</summary>
    public void WaitAllSessionsEnded() => WaitSessionsEnded(Connections);

    /// <summary>Waits until <paramref name="count"/> connections in all have been served to the end.</summary>
    public void WaitSessionsEnded(int count)
        => Assert.True(SpinWait.SpinUntil(() => SessionsEnded >= count, Timeout), $"only {SessionsEnded} of {count} sessions ended");

    /// <summary>Cancels the server (what SIGINT does in the CLI) and waits for its thread.</summary>
    public void Stop()
    {
        if (Stopped) return;
        Stopped = true;
        _stop.Cancel();
        Assert.True(_thread.Join(Timeout), "backend did not stop");
    }

    public void Dispose()
    {
        try { Stop(); }
        finally
        {
            _stop.Dispose();
            if (Device is BlockDevice block) block.Storage.Dispose();
            if (_ownsDir) try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
        }
    }
}

/// <summary>Keeps warnings and errors (an error means the server caught a failure it did not expect).</summary>
internal sealed class RecordingLogger : ILogger
{
    public ConcurrentQueue<(LogLevel Level, string Message, Exception? Exception)> Entries { get; } = new();

    public IEnumerable<string> Errors => Entries.Where(e => e.Level >= LogLevel.Error).Select(e => $"{e.Message} {e.Exception}");

    /// <summary>Failures the server only survived because of its last-resort catch (a connection died of an exception).</summary>
    public IEnumerable<string> ConnectionFailures => Errors.Where(e => e.StartsWith("connection failed", StringComparison.Ordinal));

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel)) Entries.Enqueue((logLevel, formatter(state, exception), exception));
    }
}
