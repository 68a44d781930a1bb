using System.Diagnostics;
using SharpVhost.Memory;
using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;
using Xunit.Abstractions;

namespace SharpVhost.Tests.Memory;

/// <summary>
/// Invalidation raced against busy workers. Retired mappings are really unmapped when a change returns,
/// so a worker touching one afterwards would fault and kill the test host: passing proves it never does.
/// </summary>
public class InvalidationTests(ITestOutputHelper output)
{
    private const ulong MiB = 1 << 20;
    private const ulong Extra = 64 * 1024;

    private sealed class Worker
    {
        public long RoundTrips;
        public long Sections;
        public Exception? Failure;
        public SplitQueue Device => Harness.Device;
        public required QueueHarness Harness;
        public required ulong Data;

        /// <summary>
        /// The worker is both the driver (through its own, never-unmapped view) and the device (through the
        /// domain's snapshot, inside a read section).
        /// </summary>
        public void Run(GuestMemoryDomain domain, Func<bool> stop)
        {
            try
            {
                using var reader = domain.RegisterReader();
                var h = Harness;
                var payload = new byte[48];
                var expected = new byte[48];
                var rng = new Random(7);
                while (!stop())
                {
                    rng.NextBytes(payload);
                    payload.CopyTo(h.Guest.Bytes(Data, 48));
                    for (int i = 0; i < 48; i++) expected[i] = Echo.Transform(payload[i]);
                    if (!h.Driver.TryAdd([new(Data, 48, false), new(Data + 0x1000, 48, true)], out ushort head)) throw new InvalidOperationException("ring full");
                    h.Driver.Publish();
                    var mem = reader.Enter();
                    try
                    {
                        if (!h.Device.Attach(mem)) throw new InvalidOperationException("attach: " + h.Device.BrokenReason);
                        if (!h.Device.TryPop(h.Chain)) throw new InvalidOperationException("pop: " + h.Device.BrokenReason);
                        h.Device.Push(h.Chain, Echo.Serve(h.Chain));
                        h.Device.ShouldInterrupt();
                    }
                    finally { reader.Exit(); }
                    Interlocked.Increment(ref Sections);
                    if (!h.Driver.TryGetUsed(out ushort id, out uint len) || id != head || len != 48) throw new InvalidOperationException($"bad completion {id}/{len}");
                    if (!h.Guest.Bytes(Data + 0x1000, 48).SequenceEqual(expected)) throw new InvalidOperationException("data corrupted");
                    Interlocked.Increment(ref RoundTrips);
                }
            }
            catch (Exception e) { Failure = e; }
        }
    }

    [Fact]
    public void InvalidationsRacingBusyWorkersNeverTouchAnUnmappedMapping()
    {
        // Region 0 holds both queues' rings and buffers; extra regions come and go beside it.
        using var guest = new TestGuest(4 * MiB, new RegionSpec(0, MiB));
        var domain = guest.Domain;
        var workers = new[]
        {
            // The direct worker's descriptor table spans [0xFC0, 0x1040): when region 0 is split at 0x1000
            // the direct accessor must fall back to checked for that generation, and return after.
            new Worker { Harness = new QueueHarness(guest, 8, MetadataAccess.Direct, ringOffset: 0xFC0), Data = TestGuest.Gpa(0x10000) },
            new Worker { Harness = new QueueHarness(guest, 8, MetadataAccess.Checked, ringOffset: 0x8000, index: 1), Data = TestGuest.Gpa(0x20000) },
        };
        bool stopped = false;
        var threads = workers.Select(w => new Thread(() => w.Run(domain, () => Volatile.Read(ref stopped))) { IsBackground = true }).ToArray();
        foreach (var t in threads) t.Start();

        var extras = new List<MemoryRegion>();
        var clock = Stopwatch.StartNew();
        int changes = 0, replaced = 0, removed = 0, ringChanges = 0;
        long gracePeriodsBefore = domain.GracePeriods;
        var rng = new Random(11);
        try
        {
            // Bounded: 2,000 changes or 10 s, but never fewer than 80 changes (so the counts asserted below
            // do not depend on how loaded the machine is).
            while ((changes < 2000 && clock.Elapsed < TimeSpan.FromSeconds(10) || changes < 80) && workers.All(w => w.Failure is null))
            {
                switch (changes % 4)
                {
                    case 0: // ADD_MEM_REG of a region nothing depends on
                        {
                            ulong slot = (ulong)rng.Next(0, 48);
                            var spec = new RegionSpec(MiB + slot * Extra, Extra);
                            if (extras.Any(r => r.GuestPhysicalAddress == TestGuest.Gpa(spec.Offset))) break;
                            var region = guest.MapRegion(spec);
                            domain.AddRegion(region);
                            extras.Add(region);
                            break;
                        }
                    case 1: // REM_MEM_REG: unmapped when it returns
                        if (extras.Count == 0) break;
                        {
                            var victim = extras[rng.Next(extras.Count)];
                            Assert.True(domain.RemoveRegion(victim.Description));
                            Assert.True(victim.IsUnmapped);
                            extras.Remove(victim);
                            removed++;
                        }
                        break;
                    case 2: // SET_MEM_TABLE with fresh mappings of the same memory: workers must re-validate
                        {
                            var old = domain.Current.Regions.Where(r => r.GuestPhysicalAddress < TestGuest.GpaBase + MiB).ToList();
                            bool split = replaced % 2 == 1;
                            MemoryRegion[] fresh = split
                                ? [guest.MapRegion(new RegionSpec(0, 0x1000)), guest.MapRegion(new RegionSpec(0x1000, MiB - 0x1000))]
                                : [guest.MapRegion(new RegionSpec(0, MiB))];
                            // Keep half of the extras (fresh mappings too), drop the rest.
                            var keep = extras.Where((_, i) => i % 2 == 0).ToList();
                            var dropped = extras.Except(keep).ToList();
                            domain.ReplaceAll([.. fresh, .. keep]);
                            Assert.All(old, r => Assert.True(r.IsUnmapped));
                            Assert.All(fresh, r => Assert.False(r.IsUnmapped));
                            Assert.All(dropped, r => Assert.True(r.IsUnmapped));
                            Assert.All(keep, r => Assert.False(r.IsUnmapped));
                            extras = keep;
                            replaced++;
                            if (split)
                            {
                                // Let the direct worker run a section in this generation (synchronisation, not timing).
                                long seen = Interlocked.Read(ref workers[0].Sections);
                                var spin = new SpinWait();
                                while (Interlocked.Read(ref workers[0].Sections) < seen + 2 && workers[0].Failure is null) spin.SpinOnce(sleep1Threshold: -1);
                            }
                            break;
                        }
                    case 3: // SET_VRING_ADDR: new ring configuration (log address), then a grace period
                        foreach (var w in workers)
                        {
                            var r = w.Device.Rings;
                            w.Device.SetRings(r with { UsedLogGuestAddress = r.UsedLogGuestAddress == 0 ? w.Harness.Placement.Used : 0 });
                        }
                        domain.Invalidate();
                        ringChanges++;
                        break;
                }
                changes++;
            }
        }
        finally
        {
            Volatile.Write(ref stopped, true);
            foreach (var t in threads) t.Join();
        }

        foreach (var w in workers) Assert.Null(w.Failure);
        output.WriteLine($"{changes} changes in {clock.ElapsedMilliseconds} ms: replaced {replaced}, removed {removed}, ring changes {ringChanges}; " +
            string.Join("; ", workers.Select(w => $"{w.Device.Access}: {w.RoundTrips} round trips, {w.Device.Counters.Revalidations} revalidations, {w.Device.Counters.DirectBinds} direct binds, {w.Device.Counters.DirectFallbacks} fallbacks")));
        Assert.True(replaced > 10 && removed > 10 && ringChanges > 10, $"replaced {replaced}, removed {removed}, ring changes {ringChanges}");
        Assert.True(domain.GracePeriods - gracePeriodsBefore >= replaced + removed + ringChanges);
        foreach (var w in workers)
        {
            Assert.True(w.RoundTrips > 0, "worker made no progress");
            Assert.True(w.Device.Counters.Revalidations > 0, "worker never re-validated");
            Assert.False(w.Device.IsBroken);
        }
        Assert.True(workers[0].Device.Counters.DirectBinds > 1);
        Assert.True(workers[0].Device.Counters.DirectFallbacks > 0);
        Assert.Equal(0, workers[1].Device.Counters.DirectBinds);
    }

    [Fact]
    public void ChangeWaitsForAReaderInsideAndUnmapsOnlyAfterItLeaves()
    {
        using var guest = new TestGuest(2 * MiB, new RegionSpec(0, MiB), new RegionSpec(MiB, MiB));
        var domain = guest.Domain;
        var victim = domain.Current.Regions[1];
        using var reader = domain.RegisterReader();
        var entered = new ManualResetEventSlim();
        var leave = new ManualResetEventSlim();
        GuestMemory? seen = null;
        var worker = new Thread(() =>
        {
            seen = reader.Enter();
            entered.Set();
            leave.Wait();
            // Still inside: the victim must still be mapped and readable.
            Assert.False(victim.IsUnmapped);
            _ = seen.Read<long>(victim.GuestPhysicalAddress);
            reader.Exit();
        });
        worker.Start();
        entered.Wait();
        Assert.True(reader.IsInside);
        bool removed = false;
        var change = new Thread(() => removed = domain.RemoveRegion(victim.Description));
        change.Start();
        // Whatever the scheduling, the change cannot finish while the reader is inside.
        Thread.Sleep(50);
        Assert.True(change.IsAlive);
        Assert.False(victim.IsUnmapped);
        Assert.Single(domain.Current.Regions); // already published: new readers cannot see it
        leave.Set();
        change.Join();
        Assert.True(removed);
        Assert.True(victim.IsUnmapped);
        worker.Join();
        Assert.Equal(2, seen!.Regions.Count);
        Assert.False(reader.IsInside);
    }

    [Fact]
    public void ReaderEnterAlwaysReturnsTheCurrentSnapshotAndSectionsDoNotNest()
    {
        using var guest = new TestGuest(MiB);
        using var reader = guest.Domain.RegisterReader();
        var mem = reader.Enter();
        Assert.Same(guest.Domain.Current, mem);
        Assert.Throws<InvalidOperationException>(() => reader.Enter());
        reader.Exit();
        guest.Domain.Invalidate();
        var next = reader.Enter();
        Assert.True(next.Generation > mem.Generation);
        Assert.Same(guest.Domain.Current, next);
        reader.Exit();
        // An unregistered (disposed) reader no longer holds changes up.
        var other = guest.Domain.RegisterReader();
        other.Dispose();
        guest.Domain.Invalidate();
    }

    [Fact]
    public void SetRingsThenInvalidateMakesTheQueueUseTheNewRings()
    {
        using var guest = new TestGuest(MiB);
        var data = TestGuest.Gpa(0x10000);
        var a = new QueueHarness(guest, 4, MetadataAccess.Direct);
        var b = new QueueHarness(guest, 4, MetadataAccess.Direct, ringOffset: 0x8000);
        using var reader = guest.Domain.RegisterReader();
        Assert.True(a.Driver.TryAdd([new(data, 4, false)], out _));
        a.Driver.Publish();
        var mem = reader.Enter();
        Assert.True(a.Device.Attach(mem));
        Assert.True(a.Device.TryPop(a.Chain));
        a.Device.Push(a.Chain, 0);
        reader.Exit();
        Assert.True(a.Driver.TryGetUsed(out _, out _));
        // Move queue a's device side onto b's rings (stopped ring, new base), then invalidate.
        a.Device.SetRings(QueueHarness.RingsFor(b.Placement));
        a.Device.SetBase(0);
        guest.Domain.Invalidate();
        Assert.True(b.Driver.TryAdd([new(data, 4, false)], out ushort head));
        b.Driver.Publish();
        mem = reader.Enter();
        Assert.True(a.Device.Attach(mem));
        Assert.True(a.Device.TryPop(a.Chain));
        Assert.Equal(head, a.Chain.Id);
        a.Device.Push(a.Chain, 9);
        reader.Exit();
        Assert.True(b.Driver.TryGetUsed(out ushort id, out uint len));
        Assert.Equal((head, 9u), (id, len));
        Assert.Equal(1, a.Device.Counters.Revalidations);
    }
}
