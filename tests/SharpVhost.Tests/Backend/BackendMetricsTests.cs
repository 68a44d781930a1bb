using System.Diagnostics.Metrics;
using SharpVhost.Devices.Block;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Backend;

namespace SharpVhost.Tests.Backend;

/// <summary>
/// The per-queue counters published through System.Diagnostics.Metrics move with real traffic over
/// a real socket. Runs outside the parallel collections so that only this test's session reports.
/// </summary>
[Collection(FdCountingCollection.Name)]
public class BackendMetricsTests
{
    private static Dictionary<(string Name, int Session, int Queue), long> Observe()
    {
        var values = new Dictionary<(string, int, int), long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == BackendMetrics.MeterName) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            int session = -1, queue = -1;
            string? device = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "session") session = Convert.ToInt32(tag.Value);
                else if (tag.Key == "queue") queue = Convert.ToInt32(tag.Value);
                else if (tag.Key == "device") device = tag.Value as string;
            }
            if (device == "block") values[(instrument.Name, session, queue)] = value;
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return values;
    }

    private static long Sum(Dictionary<(string Name, int Session, int Queue), long> values, string name, int queue = -1)
        => values.Where(v => v.Key.Name == name && (queue < 0 || v.Key.Queue == queue)).Sum(v => v.Value);

    private static void Wait(Task task) => Assert.True(task.Wait(TestServer.Timeout), "request did not complete");

    private static Exception Fails(Task task) => Assert.Throws<AggregateException>(() => task.Wait(TestServer.Timeout)).InnerException!;

    [Fact]
    public void QueueCountersMoveWithTraffic()
    {
        using var server = TestServer.Ram(queues: 2);
        using (var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions { NumQueues = 2, QueueSize = 32, QueueDepth = 4, BufferBytes = 1 << 20 }))
        {
            var before = Observe();
            Assert.Equal(2, before.Keys.Where(k => k.Name == "sharpvhost.queue.requests").Select(k => k.Queue).Distinct().Count());
            Assert.Single(before.Keys.Select(k => k.Session).Distinct());

            var buffer = client.AllocateBuffer(4096);
            for (int i = 0; i < 8; i++)
            {
                buffer.Span.Fill((byte)i);
                Wait(client.WriteAsync(i * 4096L, buffer));
                Wait(client.ReadAsync(i * 4096L, buffer));
            }
            Assert.IsType<IOException>(Fails(client.ReadAsync(8L << 20, buffer))); // one past the end: an error

            var after = Observe();
            Assert.Equal(17, Sum(after, "sharpvhost.queue.requests") - Sum(before, "sharpvhost.queue.requests"));
            for (int q = 0; q < 2; q++)
                Assert.True(Sum(after, "sharpvhost.queue.requests", q) > Sum(before, "sharpvhost.queue.requests", q), $"queue {q} counted nothing");
            // Eight 4 KiB writes offered to the device, eight 4 KiB reads written by it (plus headers and status bytes).
            Assert.InRange(Sum(after, "sharpvhost.queue.bytes_read") - Sum(before, "sharpvhost.queue.bytes_read"), 8 * 4096 + 17 * 16, 8 * 4096 + 17 * 16);
            Assert.InRange(Sum(after, "sharpvhost.queue.bytes_written") - Sum(before, "sharpvhost.queue.bytes_written"), 8 * 4096 + 17, 8 * 4096 + 17);
            Assert.Equal(1, Sum(after, "sharpvhost.queue.errors") - Sum(before, "sharpvhost.queue.errors"));
            Assert.True(Sum(after, "sharpvhost.queue.interrupts") > Sum(before, "sharpvhost.queue.interrupts"));
            Assert.True(Sum(after, "sharpvhost.queue.direct_binds") > 0);
        }
        server.WaitSessionsEnded(1);
        // A session that ended is no longer reported.
        Assert.DoesNotContain(Observe().Keys, k => k.Name == "sharpvhost.queue.requests");
    }
}
