using System.Diagnostics;
using SharpVhost.Interop;
using SharpVhost.Virtio;
using SharpVhost.VhostUser.Frontend;

namespace SharpVhost.Bench.Floor;

/// <summary>
/// Measures request/completion round trips per second between a driver thread and a device thread,
/// both busy-polling on their own CPU: over the <see cref="SpscRingPair"/> floor, and over our split
/// virtqueue (<see cref="SplitDriverQueue"/> on the driver side, <see cref="SplitQueue"/> on the device side,
/// one-descriptor chains, the used index published once per batch of up to 64 as our queue worker does).
/// </summary>
public static class HandoffMeter
{
    public const int QueueSize = 256;
    /// <summary>Requests the device side handles before publishing their completions (our queue worker's batch budget).</summary>
    public const int Batch = 64;
    private const int MinHandoffs = 1000;

    public static double MeasureSpsc(int driverCpu, int deviceCpu, TimeSpan duration)
    {
        using var rings = new SpscRingPair(QueueSize);
        return Measure(driverCpu, deviceCpu, duration,
            device: () => rings.Serve(Batch),
            driver: () =>
            {
                ulong id = 0;
                return (() => { rings.Post(ref id, QueueSize); }, () => rings.Reap());
            });
    }

    public static double MeasureSplit(int driverCpu, int deviceCpu, TimeSpan duration, MetadataAccess access)
    {
        using var memory = new SharedMemory(1 << 20);
        var placement = SplitRingPlacement.At(memory.Allocate(SplitRingPlacement.At(0, QueueSize).End + 16, 4096), QueueSize);
        ulong payload = memory.Allocate(64, 64);
        var driverRing = new SplitDriverQueue(memory.Memory, placement, QueueSize, eventIndex: true);
        var deviceRing = new SplitQueue(0, access) { EventIndex = true };
        deviceRing.SetSize(QueueSize);
        deviceRing.SetRings(new RingAddresses(memory.ToFrontendVirtual(placement.Descriptors), memory.ToFrontendVirtual(placement.Avail),
            memory.ToFrontendVirtual(placement.Used)));
        if (!deviceRing.Attach(memory.Memory)) throw new InvalidOperationException($"split ring did not bind: {deviceRing.BrokenReason}");
        var chain = new DescriptorChain();
        ReadOnlySpan<DriverBuffer> one = [new DriverBuffer(payload, 64, false)];
        var buffer = one.ToArray();
        double rate = Measure(driverCpu, deviceCpu, duration,
            device: () =>
            {
                int n = 0;
                while (n < Batch && deviceRing.TryPop(chain)) { deviceRing.AddUsed(chain, 0); n++; }
                deviceRing.FlushUsed();
                return n;
            },
            driver: () => (() =>
            {
                while (driverRing.FreeCount > 0 && driverRing.TryAdd(buffer, out _)) driverRing.Publish();
            }, () =>
            {
                int n = 0;
                while (driverRing.TryGetUsed(out _, out _)) n++;
                return n;
            }));
        if (deviceRing.IsBroken) throw new InvalidOperationException($"split ring broke: {deviceRing.BrokenReason}");
        return rate;
    }

    /// <summary>Runs the device loop on one pinned thread and the driver (post, then reap) on another; returns completions per second.</summary>
    private static double Measure(int driverCpu, int deviceCpu, TimeSpan duration, Func<int> device, Func<(Action Post, Func<int> Reap)> driver)
    {
        bool stop = false;
        Exception? failure = null;
        var deviceThread = new Thread(() =>
        {
            try
            {
                ThreadAffinity.PinCurrentThread(deviceCpu);
                while (!Volatile.Read(ref stop)) device();
            }
            catch (Exception e) { failure = e; }
        }) { IsBackground = true, Name = "floor-device" };
        long completed = 0;
        double seconds = 0;
        var driverThread = new Thread(() =>
        {
            try
            {
                ThreadAffinity.PinCurrentThread(driverCpu);
                var (post, reap) = driver();
                long warmEnd = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 20;
                while (Stopwatch.GetTimestamp() < warmEnd) { post(); reap(); }
                long start = Stopwatch.GetTimestamp(), end = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
                long n = 0;
                // At least MinHandoffs, even if the other thread was kept off its CPU for the whole duration.
                long giveUp = end + 30 * Stopwatch.Frequency;
                for (long now = start; now < end || (n < MinHandoffs && now < giveUp); now = Stopwatch.GetTimestamp())
                    for (int i = 0; i < 64; i++) { post(); n += reap(); }
                seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                completed = n;
            }
            catch (Exception e) { failure = e; }
            finally { Volatile.Write(ref stop, true); }
        }) { IsBackground = true, Name = "floor-driver" };
        deviceThread.Start();
        driverThread.Start();
        driverThread.Join();
        deviceThread.Join();
        if (failure is not null) throw new InvalidOperationException("handoff measurement failed: " + failure.Message, failure);
        return completed / seconds;
    }
}
