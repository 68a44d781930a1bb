using System.Net.Sockets;
using SharpVhost.Interop;

namespace SharpVhost.Tests.Protocol;

/// <summary>Tests that count open fds must not run beside other tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FdCountingCollection
{
    public const string Name = "fd counting";
}

internal static class FdTestSupport
{
    /// <summary>Number of open descriptors of this process.</summary>
    public static int OpenFdCount() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    /// <summary>Runs <paramref name="action"/> twice (the first run warms up runtime-internal fds)
    /// and asserts the second run leaves as many fds open as it found.</summary>
    public static void AssertNoFdLeak(Action action)
    {
        action();
        int before = OpenFdCount();
        action();
        // Socket finalizers may lag; a short settle keeps the count honest without masking leaks.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        int after = OpenFdCount();
        Assert.Equal(before, after);
    }

    public static (Socket A, Socket B) Pair() => UnixSockets.CreatePair();

    public static int Fd(this Microsoft.Win32.SafeHandles.SafeFileHandle handle) => (int)handle.DangerousGetHandle();

    /// <summary>Raw bytes of a message with an arbitrary header, as a hostile peer would send them.</summary>
    public static byte[] RawMessage(uint request, uint flags, uint size, ReadOnlySpan<byte> payload)
    {
        var bytes = new byte[12 + payload.Length];
        BitConverter.TryWriteBytes(bytes.AsSpan(0), request);
        BitConverter.TryWriteBytes(bytes.AsSpan(4), flags);
        BitConverter.TryWriteBytes(bytes.AsSpan(8), size);
        payload.CopyTo(bytes.AsSpan(12));
        return bytes;
    }
}
