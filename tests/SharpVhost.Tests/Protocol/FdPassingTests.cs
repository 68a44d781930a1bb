using System.IO.Pipes;
using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;

namespace SharpVhost.Tests.Protocol;

[Collection(FdCountingCollection.Name)]
public class FdPassingTests
{
    [Fact]
    public void FileDescriptorCrossesASocketPairAndStaysUsable()
    {
        string path = Path.GetTempFileName();
        try
        {
            var (a, b) = FdTestSupport.Pair();
            using (a)
            using (b)
            using (var original = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite))
            {
                UnixSockets.SendWithFds(a, [42], [original.Fd()]);

                var buffer = new byte[4];
                var fds = new int[4];
                int n = UnixSockets.ReceiveWithFds(b, buffer, fds, out int fdCount);
                Assert.Equal(1, n);
                Assert.Equal(42, buffer[0]);
                Assert.Equal(1, fdCount);
                Assert.NotEqual(original.Fd(), fds[0]);
                Assert.True(IsCloseOnExec(fds[0]), "received fds must be close-on-exec");

                using (var received = new SafeFileHandle(fds[0], ownsHandle: true))
                    RandomAccess.Write(received, "written through the copy"u8, 0);

                var readBack = new byte[24];
                Assert.Equal(24, RandomAccess.Read(original, readBack, 0));
                Assert.Equal("written through the copy"u8.ToArray(), readBack);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void PipeWriteEndCrossesTheSocket()
    {
        var (a, b) = FdTestSupport.Pair();
        using (a)
        using (b)
        using (var server = new AnonymousPipeServerStream(PipeDirection.In))
        {
            int writeEnd = (int)server.ClientSafePipeHandle.DangerousGetHandle();
            UnixSockets.SendWithFds(a, [1, 2, 3], [writeEnd]);
            server.DisposeLocalCopyOfClientHandle();

            var buffer = new byte[3];
            var fds = new int[1];
            Assert.Equal(3, UnixSockets.ReceiveWithFds(b, buffer, fds, out int count));
            Assert.Equal(1, count);
            using (var writer = new FileStream(new SafeFileHandle(fds[0], true), FileAccess.Write, 1))
                writer.Write("ping"u8);
            var read = new byte[4];
            server.ReadExactly(read);
            Assert.Equal("ping"u8.ToArray(), read);
        }
    }

    [Fact]
    public void TooManyFdsAreRejectedAndNoneLeak()
    {
        FdTestSupport.AssertNoFdLeak(() =>
        {
            var (a, b) = FdTestSupport.Pair();
            using (a)
            using (b)
            {
                var handles = Enumerable.Range(0, 5).Select(_ => File.OpenHandle("/dev/null")).ToArray();
                UnixSockets.SendWithFds(a, [7, 7], handles.Select(h => h.Fd()).ToArray());
                foreach (var h in handles) h.Dispose();

                var fds = new int[3];
                var e = Assert.Throws<FileDescriptorOverflowException>(() => UnixSockets.ReceiveWithFds(b, new byte[2], fds, out _));
                Assert.Equal(2, e.BytesReceived);
            }
        });
    }

    [Fact]
    public void EndOfStreamReadsAsZero()
    {
        var (a, b) = FdTestSupport.Pair();
        using (b)
        {
            a.Dispose();
            Assert.Equal(0, UnixSockets.ReceiveWithFds(b, new byte[8], new int[2], out int count));
            Assert.Equal(0, count);
        }
    }

    private static bool IsCloseOnExec(int fd)
    {
        // fdinfo "flags:" is octal; O_CLOEXEC is 02000000.
        string line = File.ReadLines($"/proc/self/fdinfo/{fd}").First(l => l.StartsWith("flags:"));
        long flags = Convert.ToInt64(line["flags:".Length..].Trim(), 8);
        return (flags & 0x80000) != 0;
    }
}
