using SharpVhost.Interop;
using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio;

/// <summary>
/// Driver and device on two threads that really sleep: the device on its kick eventfd after
/// EnableKicks said "nothing pending", the driver on its call eventfd after EnableInterrupts said the
/// same. A lost wakeup (a missing fence, a wrong event index) leaves both asleep for good; the
/// 30-second poll only turns such a hang into a failure, it measures nothing.
/// </summary>
public class ConcurrentWakeupTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const int Chains = 4000;
    private const int HangMs = 30_000;

    public static TheoryData<MetadataAccess, bool, int> Configs()
    {
        var data = new TheoryData<MetadataAccess, bool, int>();
        foreach (var a in new[] { MetadataAccess.Direct, MetadataAccess.Checked })
        foreach (bool e in new[] { false, true })
        foreach (int size in new[] { 1, 4, 256 })
            data.Add(a, e, size);
        return data;
    }

    [Theory, MemberData(nameof(Configs))]
    public void NoSideSleepsForeverWhileTheOtherWaits(MetadataAccess access, bool eventIdx, int size)
    {
        using var guest = new TestGuest(1 << 20);
        var h = new QueueHarness(guest, size, access, eventIndex: eventIdx);
        using var kick = EventFd.Create(nonBlocking: true);
        using var call = EventFd.Create(nonBlocking: true);
        using var stop = EventFd.Create(nonBlocking: true);
        ulong data = TestGuest.Gpa(0x10000);
        string? deviceFailure = null;
        long deviceSleeps = 0;
        var device = new Thread(() =>
        {
            try
            {
                using var reader = guest.Domain.RegisterReader();
                while (true)
                {
                    var mem = reader.Enter();
                    bool sleep;
                    try
                    {
                        if (!h.Device.Attach(mem)) { deviceFailure = h.Device.BrokenReason; return; }
                        int n = 0;
                        while (h.Device.TryPop(h.Chain)) { h.Device.AddUsed(h.Chain, 0); n++; }
                        if (n > 0)
                        {
                            h.Device.FlushUsed();
                            if (h.Device.ShouldInterrupt()) call.Signal();
                            h.Device.DisableKicks();
                        }
                        sleep = n == 0 && !h.Device.EnableKicks();
                        if (h.Device.IsBroken) { deviceFailure = h.Device.BrokenReason; return; }
                    }
                    finally { reader.Exit(); }
                    if (sleep)
                    {
                        deviceSleeps++;
                        int woken = EventFd.WaitAny([kick.Fd, stop.Fd], HangMs);
                        if (woken == 1) return;
                        if (woken < 0) { deviceFailure = "device never kicked: lost wakeup"; return; }
                        kick.TryConsume();
                    }
                }
            }
            catch (Exception e) { deviceFailure = e.ToString(); }
        });
        device.Start();
        int sent = 0, reaped = 0, driverSleeps = 0, kicks = 0;
        try
        {
            while (reaped < Chains && deviceFailure is null)
            {
                bool added = false;
                while (sent < Chains && h.Driver.TryAdd([new(data, 8, false)], out _)) { sent++; added = true; }
                if (added)
                {
                    h.Driver.Publish();
                    if (h.Driver.NeedsKick()) { kick.Signal(); kicks++; }
                }
                int got = 0;
                while (h.Driver.TryGetUsed(out _, out _)) { got++; reaped++; }
                if (got > 0 || reaped == Chains) continue;
                if (sent < Chains && h.Driver.FreeCount > 0) continue;
                // Nothing to do until the device completes something: ask for an interrupt and sleep.
                if (h.Driver.EnableInterrupts()) continue;
                driverSleeps++;
                Assert.True(EventFd.WaitAny([call.Fd], HangMs) == 0, $"driver never interrupted: lost wakeup (device: {deviceFailure})");
                call.TryConsume();
                h.Driver.DisableInterrupts();
            }
        }
        finally
        {
            stop.Signal();
            device.Join();
        }
        Assert.Null(deviceFailure);
        output.WriteLine($"{kicks} kicks, {h.Device.Counters.Interrupts} interrupts, device slept {deviceSleeps} times, driver slept {driverSleeps} times");
        Assert.Equal(Chains, reaped);
        Assert.Equal(size, h.Driver.FreeCount);
        Assert.True(kicks > 0);
        Assert.Equal(Chains, h.Device.Counters.Requests);
    }
}
