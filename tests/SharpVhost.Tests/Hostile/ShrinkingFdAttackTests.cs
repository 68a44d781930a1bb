using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// A frontend that truncates a file the backend has mapped (guest memory, the dirty log, an inflight
/// area): the backend's next access to the cut pages would raise SIGBUS and end the process. The
/// backend seals every such fd against shrinking before it checks its size, so the truncation fails
/// instead; an fd that cannot be sealed is refused with RequireSealedMemory, else accepted with a warning.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class ShrinkingFdAttackTests
{
    [Fact]
    public void GuestMemoryCannotBeTruncatedUnderTheBackend()
    {
        Attack.Run(h =>
        {
            var memory = h.Prepare();
            var q = h.StartQueue(0);
            AssertCannotShrink(memory.Fd, (long)memory.Size);
            h.AssertQueueServes(q); // and nothing was cut from under the worker
        });
    }

    [Fact]
    public void TheDirtyLogAndAnInflightAreaCannotBeTruncatedUnderTheBackend()
    {
        using var log = FileDescriptors.CreateMemfd("hostile-log", 4096);
        ulong inflight = SharpVhost.Virtio.SplitInflightTracker.RegionSize(16);
        using var area = FileDescriptors.CreateMemfd("hostile-inflight", (long)inflight * 2);
        Attack.Run(h =>
        {
            h.Prepare();
            h.Ok(FrontEndRequest.SetLogBase, new LogDescription(4096, 0), [log.Fd()]);
            h.Ok(FrontEndRequest.SetInflightFd, new InflightDescription(inflight * 2, 0, 2, 16), [area.Fd()]);
            AssertCannotShrink(log, 4096);
            AssertCannotShrink(area, (long)inflight * 2);
        });
    }

    [Fact]
    public void TheInflightAreaTheBackendHandsOutCannotBeTruncated()
    {
        Attack.Run(h =>
        {
            h.Prepare();
            using var reply = h.Call(FrontEndRequest.GetInflightFd, new InflightDescription(0, 0, 2, 16));
            Assert.NotNull(reply);
            Assert.Equal(1, reply.Fds.Count);
            using var fd = reply.Fds.Take(0);
            AssertCannotShrink(fd, (long)reply.ParsePayload<InflightDescription>().MmapSize);
        });
    }

    [Fact]
    public void AnUnsealableMemoryFileIsRefusedWhenSealedMemoryIsRequired()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            using var file = UnsealableFile(1 << 20);
            HostileFrontend.Refused(h.Request(FrontEndRequest.SetMemTable,
                new MemoryTable([new MemoryRegion(0, 1 << 20, SharedMemory.VirtualBase, 0)]), [(int)file.DangerousGetHandle()]));
        }, options: new BackendOptions { RequireSealedMemory = true });
    }

    [Fact]
    public void AnUnsealableMemoryFileIsAcceptedWithAWarningByDefault()
    {
        Attack.Run(h =>
        {
            h.Greet();
            h.SetFeatures();
            using var file = UnsealableFile(1 << 20);
            h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([new MemoryRegion(0, 1 << 20, SharedMemory.VirtualBase, 0)]), [(int)file.DangerousGetHandle()]);
        }, afterwards: server => Assert.Contains(server.Log.Entries,
            e => e.Level == LogLevel.Warning && e.Message.Contains("cannot be sealed against shrinking", StringComparison.Ordinal)));
    }

    private static void AssertCannotShrink(SafeFileHandle fd, long size)
    {
        var refused = Record.Exception(() => RandomAccess.SetLength(fd, 0));
        if (refused is null) RandomAccess.SetLength(fd, size); // restore before failing: the backend's next access would end the test run
        Assert.True(refused is not null, "the frontend could truncate a file the backend has mapped");
        Assert.Equal(size, RandomAccess.GetLength(fd));
    }

    /// <summary>A plain file (unlinked at once): it supports no seals, like QEMU's memory-backend-file.</summary>
    private static SafeFileHandle UnsealableFile(long size)
    {
        string path = Path.Combine(Path.GetTempPath(), $"sharpvhost-unsealable-{Guid.NewGuid():N}");
        var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
        File.Delete(path);
        RandomAccess.SetLength(handle, size);
        return handle;
    }
}
