using SharpVhost.Interop;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// Packed driver and device on two threads that really sleep: the device on its kick eventfd after
/// EnableKicks said nothing is pending, the driver on its call eventfd after EnableInterrupts said the
/// same. A lost wakeup (a missing fence, a wrong event position) leaves both asleep; the long wait only
/// turns such a hang into a failure, it measures nothing.
/// </summary>
public sealed class PackedConcurrentWakeupTests
{
    private const int Chains = 4000;
    private const int HangMs = 30_000;

    public static TheoryData<MetadataAccess, bool, int> Configs()
    {
        var data = new TheoryData<MetadataAccess, bool, int>();
        foreach (var a in new[] { MetadataAccess.Direct, MetadataAccess.Checked })
            foreach (bool e in new[] { false, true })
                foreach (int size in new[] { 1, 3, 256 })
                    data.Add(a, e, size);
        return data;
    }

    [Theory, MemberData(nameof(Configs))]
    public void No_side_sleeps_forever_while_the_other_waits(MetadataAccess access, bool eventIndex, int size)
    {
        using var f = new PackedRingFixture(size, access, eventIndex);
        using var kick = EventFd.Create(nonBlocking: true);
        using var call = EventFd.Create(nonBlocking: true);
        using var stop = EventFd.Create(nonBlocking: true);
        ulong data = f.AllocateBuffer(64);
        string? deviceFailure = null;
        var device = new Thread(() =>
        {
            try
            {
                var chain = new DescriptorChain();
                while (true)
                {
                    if (!f.Device.Attach(f.Memory)) { deviceFailure = f.Device.BrokenReason; return; }
                    int n = 0;
                    while (f.Device.TryPop(chain)) { f.Device.AddUsed(chain, 0); n++; }
                    if (n > 0)
                    {
                        f.Device.FlushUsed();
                        if (f.Device.ShouldInterrupt()) call.Signal();
                        f.Device.DisableKicks();
                    }
                    bool sleep = n == 0 && !f.Device.EnableKicks();
                    if (f.Device.IsBroken) { deviceFailure = f.Device.BrokenReason; return; }
                    if (!sleep) continue;
                    int woken = EventFd.WaitAny([kick.Fd, stop.Fd], HangMs);
                    if (woken == 1) return;
                    if (woken < 0) { deviceFailure = "device never kicked: lost wakeup"; return; }
                    kick.TryConsume();
                }
            }
            catch (Exception e) { deviceFailure = e.ToString(); }
        });
        device.Start();
        int sent = 0, reaped = 0, kicks = 0;
        try
        {
            while (reaped < Chains && deviceFailure is null)
            {
                bool added = false;
                while (sent < Chains && f.Driver.TryAdd([new DriverBuffer(data, 8, false)], out _)) { sent++; added = true; }
                if (added)
                {
                    f.Driver.Publish();
                    if (f.Driver.NeedsKick()) { kick.Signal(); kicks++; }
                }
                int got = 0;
                while (f.Driver.TryGetUsed(out _, out _)) { got++; reaped++; }
                if (got > 0 || reaped == Chains) continue;
                if (sent < Chains && f.Driver.FreeCount > 0) continue;
                if (f.Driver.EnableInterrupts()) continue;
                Assert.True(EventFd.WaitAny([call.Fd], HangMs) == 0, $"driver never interrupted: lost wakeup (device: {deviceFailure})");
                call.TryConsume();
                f.Driver.DisableInterrupts();
            }
        }
        finally
        {
            stop.Signal();
            device.Join();
        }
        Assert.Null(deviceFailure);
        Assert.Equal(Chains, reaped);
        Assert.Equal(size, f.Driver.FreeCount);
        Assert.True(kicks > 0);
        Assert.Equal(Chains, f.Device.Counters.Requests);
    }
}
