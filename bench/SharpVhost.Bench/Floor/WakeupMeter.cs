using System.Diagnostics;
using SharpVhost.Interop;

namespace SharpVhost.Bench.Floor;

/// <summary>
/// The floor for a request at queue depth 1 with notifications: two threads on two CPUs ping-pong
/// through two eventfds, each sleeping in poll() until the other signals, exactly the kick and the
/// call of a vhost-user queue with nothing else in between. Returns the median round-trip time.
/// </summary>
public static class WakeupMeter
{
    public static double MedianRoundTripMicroseconds(int pingCpu, int pongCpu, TimeSpan duration)
    {
        using var ping = EventFd.Create(nonBlocking: true);
        using var pong = EventFd.Create(nonBlocking: true);
        bool stop = false;
        Exception? failure = null;
        var responder = new Thread(() =>
        {
            try
            {
                ThreadAffinity.PinCurrentThread(pongCpu);
                Span<int> fds = [ping.Fd];
                while (!Volatile.Read(ref stop))
                {
                    if (EventFd.WaitAny(fds, 100) < 0 || !ping.TryConsume()) continue;
                    pong.Signal();
                }
            }
            catch (Exception e) { failure = e; }
        }) { IsBackground = true, Name = "floor-pong" };
        var samples = new List<long>(1 << 16);
        var initiator = new Thread(() =>
        {
            try
            {
                ThreadAffinity.PinCurrentThread(pingCpu);
                Span<int> fds = [pong.Fd];
                long end = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
                while (Stopwatch.GetTimestamp() < end)
                {
                    long start = Stopwatch.GetTimestamp();
                    ping.Signal();
                    while (EventFd.WaitAny(fds, 1000) < 0) { }
                    pong.TryConsume();
                    samples.Add(Stopwatch.GetTimestamp() - start);
                }
            }
            catch (Exception e) { failure = e; }
            finally { Volatile.Write(ref stop, true); }
        }) { IsBackground = true, Name = "floor-ping" };
        responder.Start();
        initiator.Start();
        initiator.Join();
        responder.Join();
        if (failure is not null) throw new InvalidOperationException("wake-up measurement failed: " + failure.Message, failure);
        var sorted = samples.ToArray();
        Array.Sort(sorted);
        return Stats.PercentileOfSorted(sorted, 50) * 1e6 / Stopwatch.Frequency;
    }
}
