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

    private static QueueWorker Worker(GuestNet guest, GuestQueue q, IQueueProcessor processor, EventFd kick)
        => new(q.Device, guest.Domain, processor, kick, call: null, err: null, busyPoll: false, NullLogger.Instance);

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
}
