using System.Diagnostics.Metrics;
using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// Per-queue counters exposed through System.Diagnostics.Metrics (meter "SharpVhost.Backend"), so
/// dotnet-counters, OpenTelemetry or a MeterListener can watch a running backend. The counters
/// themselves are plain fields the workers bump (<see cref="QueueCounters"/>); the instruments are
/// observable and read them only when a listener asks, so the hot path pays nothing.
/// </summary>
public static class BackendMetrics
{
    public const string MeterName = "SharpVhost.Backend";
    private static readonly Meter Meter = new(MeterName);
    private static readonly object Lock = new();
    private static Registration[] _sessions = [];
    private static int _nextSession;

    static BackendMetrics()
    {
        Observe("sharpvhost.queue.requests", "{request}", c => c.Requests, "Descriptor chains popped");
        Observe("sharpvhost.queue.bytes_read", "By", c => c.ReadableBytes, "Device-readable bytes offered by the driver");
        Observe("sharpvhost.queue.bytes_written", "By", c => c.WritableBytes, "Bytes the device reported written");
        Observe("sharpvhost.queue.errors", "{error}", c => c.Errors, "Bad requests and ring errors");
        Observe("sharpvhost.queue.kicks", "{kick}", c => c.Kicks, "Kicks received");
        Observe("sharpvhost.queue.interrupts", "{interrupt}", c => c.Interrupts, "Interrupts (call eventfd signals) sent");
        Observe("sharpvhost.queue.direct_binds", "{bind}", c => c.DirectBinds, "Ring bindings through direct pointers");
        Observe("sharpvhost.queue.checked_binds", "{bind}", c => c.CheckedBinds, "Ring bindings through the checked accessor");
        Observe("sharpvhost.queue.direct_fallbacks", "{bind}", c => c.DirectFallbacks, "Direct bindings refused (ring not inside one region)");
        Observe("sharpvhost.queue.revalidations", "{bind}", c => c.Revalidations, "Ring re-validations after an invalidation");
    }

    private static void Observe(string name, string unit, Func<QueueCounters, long> read, string description)
        => Meter.CreateObservableCounter(name, () => Measure(read), unit, description);

    private static IEnumerable<Measurement<long>> Measure(Func<QueueCounters, long> read)
    {
        foreach (var session in Volatile.Read(ref _sessions))
            foreach (var queue in session.Queues())
                yield return new Measurement<long>(read(queue.Counters),
                    new KeyValuePair<string, object?>("device", session.Device), new KeyValuePair<string, object?>("session", session.Id),
                    new KeyValuePair<string, object?>("queue", queue.Index));
    }

    /// <summary>Starts reporting a session's queues (read afresh at each observation); dispose the result to stop.</summary>
    public static IDisposable Register(string device, Func<IEnumerable<IDeviceQueue>> queues)
    {
        var registration = new Registration(device, Interlocked.Increment(ref _nextSession), queues);
        lock (Lock) _sessions = [.. _sessions, registration];
        return registration;
    }

    private sealed record Registration(string Device, int Id, Func<IEnumerable<IDeviceQueue>> Queues) : IDisposable
    {
        public void Dispose()
        {
            lock (Lock) _sessions = _sessions.Where(s => s != this).ToArray();
        }
    }
}
