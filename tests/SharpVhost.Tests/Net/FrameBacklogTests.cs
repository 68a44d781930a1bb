using SharpVhost.Devices.Net;
using SharpVhost.Interop;

namespace SharpVhost.Tests.Net;

public class FrameBacklogTests
{
    [Fact]
    public void Frames_come_out_in_order_and_a_full_backlog_refuses()
    {
        using var backlog = new FrameBacklog(4, 1518);
        for (int i = 0; i < 4; i++) Assert.True(backlog.TryEnqueue(Frames.Ethernet(Frames.B, Frames.A, 60, tag: i)));
        Assert.False(backlog.TryEnqueue(Frames.Ethernet(Frames.B, Frames.A)));
        Assert.False(backlog.TryEnqueue(new byte[1519]));
        Assert.Equal(2, backlog.Dropped);
        for (int i = 0; i < 4; i++)
        {
            Assert.True(backlog.TryPeek(out _, out var frame));
            Assert.Equal(i, Frames.Tag(frame));
            backlog.Consume();
        }
        Assert.False(backlog.TryPeek(out _, out _));
    }

    [Fact]
    public void The_wake_descriptor_fires_once_the_consumer_found_it_empty()
    {
        using var backlog = new FrameBacklog(8, 1518);
        Span<int> fd = [backlog.WakeFd];
        Assert.True(backlog.TryEnqueue(Frames.Ethernet(Frames.B, Frames.A)));
        Assert.Equal(0, EventFd.WaitAny(fd, 0));
        backlog.BeginBatch();
        Assert.Equal(-1, EventFd.WaitAny(fd, 0));
        Assert.True(backlog.TryPeek(out _, out _));
        backlog.Consume();
        Assert.False(backlog.TryPeek(out _, out _)); // empty: the next frame must wake us
        Assert.True(backlog.TryEnqueue(Frames.Ethernet(Frames.B, Frames.A)));
        Assert.Equal(0, EventFd.WaitAny(fd, 0));
    }

    [Fact]
    public void Concurrent_producers_lose_nothing_and_keep_their_own_order()
    {
        const int producers = 3, perProducer = 20000;
        using var backlog = new FrameBacklog(256, 1518);
        var threads = Enumerable.Range(0, producers).Select(p => new Thread(() =>
        {
            var frame = Frames.Ethernet(Frames.B, Frames.A, 64);
            for (int i = 0; i < perProducer; i++)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(14), p * perProducer + i);
                while (!backlog.TryEnqueue(frame)) Thread.Yield();
            }
        })).ToArray();
        foreach (var t in threads) t.Start();
        var next = new int[producers];
        int received = 0;
        Span<int> fd = [backlog.WakeFd];
        while (received < producers * perProducer)
        {
            backlog.BeginBatch();
            while (backlog.TryPeek(out _, out var frame))
            {
                int tag = Frames.Tag(frame);
                int p = tag / perProducer;
                Assert.Equal(next[p]++, tag % perProducer);
                backlog.Consume();
                received++;
            }
            if (received < producers * perProducer) EventFd.WaitAny(fd, 100);
        }
        foreach (var t in threads) t.Join();
        Assert.All(next, n => Assert.Equal(perProducer, n));
    }
}
