using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio;

/// <summary>
/// Bounded exhaustive check of the notification rules (virtio 1.2, 2.7.7 and 2.7.10, and
/// NOTIFY_ON_EMPTY) for queue sizes 1, 2 and 4, from base indices around the 16-bit wrap, against a
/// reference written independently of <see cref="SplitRingLayout.NeedsEvent"/>: "notify iff one of the
/// indices the other side moved across equals the event index".
/// </summary>
public class NotificationEnumerationTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const ulong MiB = 1 << 20;
    private static readonly ulong Data = TestGuest.Gpa(0x10000);
    private static readonly int[] Sizes = [1, 2, 4];
    private static readonly ushort[] Starts = [65533, 65534, 65535, 0, 1, 32767];

    /// <summary>Whether <paramref name="e"/> is one of old, old+1, ..., new-1 (mod 2^16): the indices written in the step.</summary>
    private static bool Crossed(ushort e, ushort old, ushort @new)
    {
        for (ushort v = old; v != @new; v++) if (v == e) return true;
        return false;
    }

    private static IEnumerable<ushort> EventValues(ushort s, int n)
    {
        for (int d = -3; d <= 2 * n + 3; d++) yield return unchecked((ushort)(s + d));
        yield return unchecked((ushort)(s + 0x8000));
    }

    private static void Add(QueueHarness h, int count)
    {
        for (int i = 0; i < count; i++) Assert.True(h.Driver.TryAdd([new DriverBuffer(Data, 1, false)], out _));
    }

    /// <summary>Completes everything and reaps it so the harness is idle again; consumes the pending interrupt decision.</summary>
    private static void Drain(QueueHarness h, List<ushort> held)
    {
        h.Driver.Publish();
        Assert.True(h.Attach());
        while (h.Device.TryPop(h.Chain)) held.Add(h.Chain.Id);
        foreach (var id in held) h.Device.AddUsed(id, 0);
        held.Clear();
        h.Device.FlushUsed();
        h.Device.ShouldInterrupt();
        while (h.Driver.TryGetUsed(out _, out _)) { }
        Assert.Equal(0, h.Driver.InFlight);
        Assert.False(h.Device.IsBroken, h.Device.BrokenReason);
    }

    private static void Reset(QueueHarness h, ushort s)
    {
        h.ForceBase(s);
        h.WriteU16(h.Placement.Avail + SplitRingLayout.AvailFlagsOffset, 0);
        h.WriteU16(h.Placement.Avail + SplitRingLayout.UsedEventOffset(h.Size), s);
        h.WriteU16(h.Placement.Used + SplitRingLayout.UsedFlagsOffset, 0);
        h.WriteU16(h.Placement.Used + SplitRingLayout.AvailEventOffset(h.Size), s);
        Assert.True(h.Attach());
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void DeviceInterruptsExactlyWhenTheRulesRequire(MetadataAccess access)
    {
        long cases = 0;
        foreach (int n in Sizes)
        {
            using var guest = new TestGuest(MiB);
            var h = new QueueHarness(guest, n, access);
            var held = new List<ushort>();
            foreach (bool eventIdx in new[] { false, true })
            foreach (bool noe in new[] { false, true })
            {
                h.Device.EventIndex = eventIdx;
                h.Device.NotifyOnEmpty = noe;
                foreach (ushort s in Starts)
                for (int prime = 0; prime <= n; prime++)          // an earlier batch, already evaluated (0: none since SetBase)
                for (int added = 0; added <= n; added++)          // then the driver makes this many available
                for (int popped = 0; popped <= added; popped++)   // the device takes this many
                for (int done = 0; done <= popped; done++)        // and publishes this many used elements
                foreach (bool split in done >= 2 ? new[] { false, true } : new[] { false }) // in one flush or two
                foreach (ushort e in EventValues(s, n))
                foreach (ushort flags in new ushort[] { 0, SplitRingLayout.AvailNoInterrupt })
                {
                    Reset(h, s);
                    ushort old = s;
                    bool valid = false;
                    if (prime > 0)
                    {
                        Add(h, prime);
                        h.Driver.Publish();
                        for (int i = 0; i < prime; i++) { Assert.True(h.Device.TryPop(h.Chain)); h.Device.AddUsed(h.Chain.Id, 0); }
                        h.Device.FlushUsed();
                        // used_event == s, flags 0, ring now empty: every rule says notify.
                        Assert.True(h.Device.ShouldInterrupt());
                        while (h.Driver.TryGetUsed(out _, out _)) { }
                        old = (ushort)(s + prime);
                        valid = true;
                    }
                    Add(h, added);
                    h.Driver.Publish();
                    for (int i = 0; i < popped; i++) { Assert.True(h.Device.TryPop(h.Chain)); held.Add(h.Chain.Id); }
                    for (int i = 0; i < done; i++)
                    {
                        h.Device.AddUsed(held[0], 0);
                        held.RemoveAt(0);
                        if (split && i == 0) h.Device.FlushUsed();
                    }
                    h.Device.FlushUsed();
                    h.WriteU16(h.Placement.Avail + SplitRingLayout.UsedEventOffset(n), e);
                    h.WriteU16(h.Placement.Avail + SplitRingLayout.AvailFlagsOffset, flags);
                    ushort @new = (ushort)(old + done);
                    bool expected;
                    if (done == 0) expected = false;                                  // nothing published: nothing to say
                    else if (noe && added == popped) expected = true;                 // ran out of buffers: notify regardless
                    else if (eventIdx) expected = !valid || Crossed(e, old, @new);    // used_event crossed (first one always, as Linux vhost)
                    else expected = flags == 0;                                       // NO_INTERRUPT honoured
                    bool actual = h.Device.ShouldInterrupt();
                    if (expected != actual)
                        Assert.Fail($"size {n} event_idx {eventIdx} notify_on_empty {noe} base {s} prime {prime} added {added} popped {popped} done {done} split {split} used_event {e} flags {flags}: expected {expected}, got {actual}");
                    Assert.False(h.Device.ShouldInterrupt()); // nothing new since
                    Assert.Equal(@new, h.UsedIdxInRing);
                    Drain(h, held);
                    cases++;
                }
            }
        }
        output.WriteLine($"{cases} cases");
        Assert.True(cases > 100_000, $"{cases} cases");
    }

    [Fact]
    public void DriverKicksExactlyWhenTheRulesRequire()
    {
        long cases = 0;
        foreach (int n in Sizes)
        foreach (bool eventIdx in new[] { false, true })
        {
            using var guest = new TestGuest(MiB);
            var h = new QueueHarness(guest, n, MetadataAccess.Direct, eventIndex: eventIdx);
            h.Device.EventIndex = eventIdx;
            var held = new List<ushort>();
            foreach (ushort s in Starts)
            for (int before = 0; before < n; before++)               // published and kick-decided earlier
            for (int now = 0; now <= n - before; now++)              // published now
            foreach (bool split in now >= 2 ? new[] { false, true } : new[] { false })
            foreach (ushort ev in eventIdx ? EventValues(s, n) : [s])
            foreach (ushort flags in eventIdx ? new ushort[] { 0 } : [0, SplitRingLayout.UsedNoNotify])
            {
                Reset(h, s);
                Add(h, before);
                h.Driver.Publish();
                Assert.Equal(before > 0, h.Driver.NeedsKick()); // avail_event == s, flags 0
                h.WriteU16(h.Placement.Used + SplitRingLayout.AvailEventOffset(n), ev);
                h.WriteU16(h.Placement.Used + SplitRingLayout.UsedFlagsOffset, flags);
                for (int i = 0; i < now; i++)
                {
                    Add(h, 1);
                    if (split && i == 0) h.Driver.Publish();
                }
                h.Driver.Publish();
                ushort old = (ushort)(s + before), @new = (ushort)(s + before + now);
                bool expected = now > 0 && (eventIdx ? Crossed(ev, old, @new) : flags == 0);
                bool actual = h.Driver.NeedsKick();
                if (expected != actual)
                    Assert.Fail($"size {n} event_idx {eventIdx} base {s} before {before} now {now} split {split} avail_event {ev} flags {flags}: expected {expected}, got {actual}");
                Assert.False(h.Driver.NeedsKick());
                Drain(h, held);
                cases++;
            }
        }
        output.WriteLine($"{cases} cases");
        Assert.True(cases > 1000, $"{cases} cases");
    }

    /// <summary>
    /// The device going to sleep (EnableKicks) against the driver publishing, in every order at method
    /// granularity: EnableKicks returns exactly whether work is pending, and if it said "none" the
    /// driver's next publish kicks. The mirror image for interrupts: EnableInterrupts against a publish.
    /// </summary>
    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void NoLostWakeups(MetadataAccess access)
    {
        long cases = 0;
        foreach (int n in Sizes)
        foreach (bool eventIdx in new[] { false, true })
        {
            using var guest = new TestGuest(MiB);
            var h = new QueueHarness(guest, n, access, eventIndex: eventIdx);
            h.Device.EventIndex = eventIdx;
            var held = new List<ushort>();
            foreach (ushort s in Starts)
            foreach (bool priorDisable in new[] { false, true })
            for (int pending = 0; pending < n; pending++)
            for (int poppedFirst = 0; poppedFirst <= pending; poppedFirst++)
            for (int k = 1; k <= n - pending; k++)
            for (int order = 0; order < 3; order++)
            {
                Reset(h, s);
                if (priorDisable)
                {
                    h.Device.DisableKicks(); // flags: NO_NOTIFY; event idx: no-op, so make avail_event stale
                    if (eventIdx) h.WriteU16(h.Placement.Used + SplitRingLayout.AvailEventOffset(n), (ushort)(s - 5));
                }
                Add(h, pending);
                h.Driver.Publish();
                h.Driver.NeedsKick();
                for (int i = 0; i < poppedFirst; i++) { Assert.True(h.Device.TryPop(h.Chain)); held.Add(h.Chain.Id); }
                bool workAtEnable, enabled, kicked;
                if (order == 0)
                {
                    workAtEnable = pending > poppedFirst;
                    enabled = h.Device.EnableKicks();
                    Add(h, k); h.Driver.Publish(); kicked = h.Driver.NeedsKick();
                }
                else if (order == 1)
                {
                    Add(h, k); h.Driver.Publish();
                    workAtEnable = true;
                    enabled = h.Device.EnableKicks();
                    kicked = h.Driver.NeedsKick();
                }
                else
                {
                    Add(h, k); h.Driver.Publish(); kicked = h.Driver.NeedsKick();
                    workAtEnable = true;
                    enabled = h.Device.EnableKicks();
                }
                Assert.Equal(workAtEnable, enabled);
                if (!enabled) Assert.True(kicked, $"lost kick: size {n} event_idx {eventIdx} base {s} order {order}");
                Drain(h, held);
                cases++;
            }

            // Interrupts: the driver re-enables while the device completes.
            foreach (ushort s in Starts)
            for (int inFlight = 1; inFlight <= n; inFlight++)
            for (int doneFirst = 0; doneFirst < inFlight; doneFirst++)
            for (int order = 0; order < 3; order++)
            {
                Reset(h, s);
                Add(h, inFlight);
                h.Driver.Publish();
                for (int i = 0; i < inFlight; i++) { Assert.True(h.Device.TryPop(h.Chain)); held.Add(h.Chain.Id); }
                h.Driver.DisableInterrupts();
                for (int i = 0; i < doneFirst; i++) { h.Device.AddUsed(held[0], 0); held.RemoveAt(0); }
                h.Device.FlushUsed();
                h.Device.ShouldInterrupt();
                while (h.Driver.TryGetUsed(out _, out _)) { }
                bool usedAtEnable, enabled, interrupted;
                void Complete() { h.Device.AddUsed(held[0], 0); held.RemoveAt(0); h.Device.FlushUsed(); }
                if (order == 0)
                {
                    usedAtEnable = false;
                    enabled = h.Driver.EnableInterrupts();
                    Complete(); interrupted = h.Device.ShouldInterrupt();
                }
                else if (order == 1)
                {
                    Complete();
                    usedAtEnable = true;
                    enabled = h.Driver.EnableInterrupts();
                    interrupted = h.Device.ShouldInterrupt();
                }
                else
                {
                    Complete(); interrupted = h.Device.ShouldInterrupt();
                    usedAtEnable = true;
                    enabled = h.Driver.EnableInterrupts();
                }
                Assert.Equal(usedAtEnable, enabled);
                if (!enabled) Assert.True(interrupted, $"lost interrupt: size {n} event_idx {eventIdx} base {s} order {order}");
                Drain(h, held);
                cases++;
            }
        }
        output.WriteLine($"{cases} cases");
        Assert.True(cases > 500, $"{cases} cases");
    }

    [Fact]
    public void NeedsEventMatchesTheCrossingRuleForEveryOffset()
    {
        // All old/new pairs at most 8 apart around the wrap, every event index near them.
        foreach (ushort old in new ushort[] { 65528, 65531, 65534, 65535, 0, 3, 32765 })
        for (int step = 0; step <= 8; step++)
        for (int d = -12; d <= 20; d++)
        {
            ushort @new = (ushort)(old + step), e = unchecked((ushort)(old + d));
            Assert.Equal(Crossed(e, old, @new), SplitRingLayout.NeedsEvent(e, @new, old));
        }
    }

    [Fact]
    public void ResetForgetsAPendingInterruptDecision()
    {
        using var guest = new TestGuest(MiB);
        var h = new QueueHarness(guest, 4, MetadataAccess.Direct);
        Assert.True(h.Attach());
        Add(h, 1);
        h.Driver.Publish();
        Assert.True(h.Device.TryPop(h.Chain));
        h.Device.Push(h.Chain, 0); // published, interrupt decision pending
        h.Device.Reset();
        Assert.True(h.Attach());
        Assert.False(h.Device.ShouldInterrupt()); // nothing was published since the reset
    }
}
