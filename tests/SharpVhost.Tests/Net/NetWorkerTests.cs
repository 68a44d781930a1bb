using Microsoft.Extensions.Logging.Abstractions;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Net;

/// <summary>
/// Net queues under a real <see cref="QueueWorker"/> thread: the frames a transmit queue owes when it is
/// stopped, and a receive queue that has buffers but no frames (it must sleep, and still deliver what
/// comes later). Deadlines here are generous bounds on waiting, never assertions about speed.
/// </summary>
public class NetWorkerTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>Counts the passes a worker makes; otherwise the processor it wraps.</summary>
    private sealed class CountingProcessor(IQueueProcessor inner) : IQueueProcessor, IDisposable
    {
        private long _passes;
        public long Passes => Interlocked.Read(ref _passes);
        public int Process(IDeviceQueue queue, GuestMemory memory, int budget)
        {
            Interlocked.Increment(ref _passes);
            return inner.Process(queue, memory, budget);
        }
        public int WakeFd => inner.WakeFd;
        public bool IdleUntilWake => inner.IdleUntilWake;
        public bool FinishOnStop => inner.FinishOnStop;
        public void Dispose() => (inner as IDisposable)?.Dispose();
    }

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"gave up waiting for {what}");
            Thread.Sleep(5);
        }
    }

    private static QueueWorker Worker(GuestNet guest, GuestQueue q, IQueueProcessor processor, EventFd kick, bool busyPoll = false)
        => new(q.Device, guest.Domain, processor, kick, call: null, err: null, busyPoll, BackendOptions.DefaultPollMax, NullLogger.Instance);

    private static byte[] Frame(int tag) => Frames.WithHeader(Frames.Ethernet(Frames.B, Frames.A, 64, tag));

    // ---- bug 1: the last burst of a transmit queue that is stopped ----

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_stopped_transmit_queue_first_finishes_the_frames_made_available_before_the_stop(bool eventIndex)
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device, eventIndex: eventIndex);
        var tx = guest.Tx();
        using var kick = EventFd.Create(nonBlocking: true);
        var worker = Worker(guest, tx, tx.Processor, kick);
        try
        {
            worker.Start();
            tx.AddReadable(Frame(0));
            kick.Signal();
            WaitUntil(() => Interlocked.Read(ref device.Port.Counters.TxFrames) == 1, "the first frame");
            Thread.Sleep(50); // let the worker go back to sleep (not required for the check, only for the reproduction)
            // The driver's last burst: made available, and its kick sent, but the worker has not run
            // since (DPDK testpmd stops right after its last burst). Here the kick never comes at all.
            for (int i = 1; i <= 200; i++) tx.AddReadable(Frame(i));
            worker.Stop(finish: true); // what SET_VRING_ENABLE 0 and GET_VRING_BASE do
        }
        finally { worker.Dispose(); }
        Assert.Equal(201, device.Port.Counters.TxFrames);
        Assert.Equal(201, tx.Device.LastAvailIndex); // the base GET_VRING_BASE returns covers them
        Assert.Equal(201, tx.Reap().Count);
    }

    // ---- bug 2: a receive queue with buffers and no frames ----

    /// <remarks>Busy polling too: a polling sink's receive worker took the CPU from its transmit worker.</remarks>
    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    [InlineData(false, true)]
    public void An_idle_receive_queue_with_posted_buffers_sleeps_and_still_delivers_later_frames(bool eventIndex, bool busyPoll)
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device, eventIndex: eventIndex);
        var rx = guest.Rx();
        rx.Refill(64, 2048);
        var counting = new CountingProcessor(rx.Processor);
        using var kick = EventFd.Create(nonBlocking: true);
        var worker = Worker(guest, rx, counting, kick, busyPoll);
        try
        {
            worker.Start();
            Thread.Sleep(200);
            // Buffers but no frames: a pass or two, then sleep. A worker that took the buffers for work
            // would have made tens of thousands of passes by now, even on a busy machine.
            long idle = counting.Passes;
            Assert.InRange(idle, 0, 20);

            // The guest posts more buffers and kicks: still nothing to deliver, still no spinning.
            rx.Refill(32, 2048);
            if (rx.Driver.NeedsKick()) kick.Signal();
            Thread.Sleep(200);
            Assert.InRange(counting.Passes - idle, 0, 20);

            // A frame arrives later: it is delivered.
            device.Port.Backlog(0).TryEnqueue(Frames.Ethernet(Frames.A, Frames.B, 100, tag: 7));
            var got = new List<(ushort Head, uint Length, byte[] Data)>();
            WaitUntil(() => { got.AddRange(rx.Reap()); return got.Count == 1; }, "the late frame");
            Assert.Equal(7, Frames.Tag(got[0].Data.AsSpan(VirtioNet.HeaderSize)));
            Assert.Equal(1, device.Port.Counters.RxFrames);
        }
        finally { worker.Dispose(); }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Frames_waiting_for_buffers_are_delivered_when_the_guest_refills(bool eventIndex)
    {
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device, eventIndex: eventIndex);
        var rx = guest.Rx();
        var counting = new CountingProcessor(rx.Processor);
        using var kick = EventFd.Create(nonBlocking: true);
        var worker = Worker(guest, rx, counting, kick);
        try
        {
            worker.Start();
            for (int i = 0; i < 3; i++) device.Port.Backlog(0).TryEnqueue(Frames.Ethernet(Frames.A, Frames.B, 80, tag: i));
            Thread.Sleep(100);
            long waiting = counting.Passes; // frames but no buffers: no spinning either
            Assert.InRange(waiting, 0, 20);
            Assert.Empty(rx.Reap());
            rx.Refill(3, 2048);
            if (rx.Driver.NeedsKick()) kick.Signal(); // as a driver does: kicks must have been re-enabled
            var got = new List<(ushort Head, uint Length, byte[] Data)>();
            WaitUntil(() => { got.AddRange(rx.Reap()); return got.Count == 3; }, "three frames after the refill");
            Assert.Equal([0, 1, 2], got.Select(u => Frames.Tag(u.Data.AsSpan(VirtioNet.HeaderSize))));
        }
        finally { worker.Dispose(); }
    }

    /// <summary>
    /// Frames arrive from another thread at arbitrary moments while the guest reaps and refills: every
    /// frame arrives (no wake-up lost between "no frame" and the worker's sleep, nor between "no buffer"
    /// and a refill), and the worker does not spin in between.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Frames_arriving_at_any_moment_are_all_delivered(bool eventIndex)
    {
        const int count = 3000;
        using var device = new NetDevice(new EchoEndpoint(), new NetDeviceOptions { RxBacklog = 4096 });
        using var guest = new GuestNet(device, eventIndex: eventIndex, queueSize: 64);
        var rx = guest.Rx();
        rx.Refill(16, 2048);
        using var kick = EventFd.Create(nonBlocking: true);
        var worker = Worker(guest, rx, rx.Processor, kick);
        var producer = new Thread(() =>
        {
            var random = new Random(42);
            for (int i = 0; i < count; i++)
            {
                while (!device.Port.Backlog(0).TryEnqueue(Frames.Ethernet(Frames.A, Frames.B, 64, tag: i))) Thread.Yield();
                if (random.Next(8) == 0) Thread.Sleep(random.Next(2));
                else if (random.Next(2) == 0) Thread.Yield();
            }
        }) { IsBackground = true };
        try
        {
            worker.Start();
            producer.Start();
            int received = 0;
            var deadline = DateTime.UtcNow + Patience;
            var random = new Random(7);
            while (received < count)
            {
                Assert.True(DateTime.UtcNow < deadline, $"only {received} of {count} frames arrived ({device.Port.Counters})");
                foreach (var u in rx.Reap())
                {
                    Assert.Equal(received, Frames.Tag(u.Data.AsSpan(VirtioNet.HeaderSize)));
                    received++;
                }
                int free = rx.Driver.FreeCount;
                if (free > 0)
                {
                    rx.Refill(Math.Min(free, 1 + random.Next(16)), 2048);
                    if (rx.Driver.NeedsKick()) kick.Signal();
                }
                if (random.Next(4) == 0) Thread.Sleep(1);
            }
            producer.Join();
        }
        finally { worker.Dispose(); }
        Assert.Equal(count, device.Port.Counters.RxFrames);
    }
}
