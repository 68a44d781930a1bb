using SharpVhost.Interop;

namespace SharpVhost.Tests.Memory;

public class InteropTests
{
    [Fact]
    public void EventFdSignalsConsumesAndPolls()
    {
        using var a = EventFd.Create(nonBlocking: true);
        using var b = EventFd.Create(nonBlocking: true);
        Assert.False(a.TryConsume());
        Assert.Equal(-1, EventFd.WaitAny([a.Fd, b.Fd], 0));
        b.Signal();
        b.Signal();
        Assert.Equal(1, EventFd.WaitAny([a.Fd, b.Fd], -1));
        Assert.Equal(1, EventFd.WaitAny([a.Fd, b.Fd], 0)); // waiting does not consume
        Assert.True(b.TryConsume()); // both signals in one read
        Assert.False(b.TryConsume());
        Assert.Equal(-1, EventFd.WaitAny([a.Fd, b.Fd], 0));
        var waker = new Thread(() => a.Signal());
        waker.Start();
        Assert.Equal(0, EventFd.WaitAny([a.Fd, b.Fd], -1));
        waker.Join();
        Assert.True(a.TryConsume());
    }

    [Fact]
    public void AdoptedEventFdBecomesNonBlockingAndDisposeIsIdempotent()
    {
        var original = EventFd.Create(nonBlocking: false);
        var adopted = EventFd.Adopt(original.Fd); // takes the descriptor over; 'original' is abandoned, not disposed
        Assert.False(adopted.TryConsume()); // would block forever if Adopt had not set O_NONBLOCK
        adopted.Signal();
        Assert.True(adopted.TryConsume());
        adopted.Dispose();
        Assert.Equal(-1, adopted.Fd);
        adopted.Dispose();
        Assert.Throws<ArgumentOutOfRangeException>(() => EventFd.Adopt(-1));
    }

    [Fact]
    public void MemoryMappingsOfOneMemfdShareBytes()
    {
        long size = 4 * FileDescriptors.PageSize;
        using var fd = FileDescriptors.CreateMemfd("mapping", size);
        Assert.Equal(size, FileDescriptors.SizeOf(fd));
        using var rw = MemoryMapping.Map(fd, 0, (ulong)size, writable: true);
        using var ro = MemoryMapping.Map(fd, (ulong)FileDescriptors.PageSize, (ulong)FileDescriptors.PageSize, writable: false);
        Assert.True(rw.Writable);
        Assert.False(ro.Writable);
        rw.GetSpan((ulong)FileDescriptors.PageSize + 5, 3).Fill(9);
        Assert.Equal(new byte[] { 0, 9, 9, 9, 0 }, ro.GetSpan(4, 5).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => ro.GetSpan((ulong)FileDescriptors.PageSize - 1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => ro.GetSpan((ulong)FileDescriptors.PageSize + 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryMapping.Map(fd, 0, 0, true));
        Assert.Throws<ArgumentException>(() => MemoryMapping.Map(fd, 1, 16, true));

        // Hole punching (DISCARD) and zeroing (WRITE_ZEROES) keep the size and read back as zeros.
        FileDescriptors.PunchHole(fd, FileDescriptors.PageSize, FileDescriptors.PageSize);
        Assert.All(ro.GetSpan(0, FileDescriptors.PageSize).ToArray(), b => Assert.Equal(0, b));
        rw.GetSpan(0, 100).Fill(1);
        Assert.True(FileDescriptors.TryZeroRange(fd, 0, 100, unmap: true));
        Assert.All(rw.GetSpan(0, 100).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(size, FileDescriptors.SizeOf(fd));
    }

    [Fact]
    public void AnonymousMappingProtectAndUnmap()
    {
        var m = MemoryMapping.Anonymous((ulong)FileDescriptors.PageSize * 2);
        Assert.All(m.GetSpan(0, 64).ToArray(), b => Assert.Equal(0, b));
        m.GetSpan(100, 1)[0] = 5;
        m.Protect(read: true, write: false);
        Assert.Equal(5, m.GetSpan(100, 1)[0]);
        m.Protect(read: true, write: true);
        m.GetSpan(101, 1)[0] = 6;
        Assert.False(m.IsUnmapped);
        m.Dispose();
        Assert.True(m.IsUnmapped);
        Assert.Equal(0, m.Address);
        m.Dispose(); // idempotent
    }

    [Fact]
    public void ThreadAffinityPinsOnlyTheCallingThread()
    {
        var allowed = ThreadAffinity.CurrentThreadCpus();
        Assert.NotEmpty(allowed);
        int cpu = allowed[^1];
        IReadOnlyList<int>? pinnedMask = null;
        Exception? failure = null;
        // A thread of its own: pinning must not leak into the test runner's pool threads.
        var thread = new Thread(() =>
        {
            try
            {
                ThreadAffinity.PinCurrentThread(cpu);
                pinnedMask = ThreadAffinity.CurrentThreadCpus();
            }
            catch (Exception e) { failure = e; }
        });
        thread.Start();
        thread.Join();
        Assert.Null(failure);
        Assert.Equal(new[] { cpu }, pinnedMask);
        Assert.Equal(allowed, ThreadAffinity.CurrentThreadCpus());

        Assert.Throws<ArgumentOutOfRangeException>(() => ThreadAffinity.PinCurrentThread(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ThreadAffinity.PinCurrentThread(ThreadAffinity.MaxCpu + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ThreadAffinity.PinProcess(-1));
    }
}
