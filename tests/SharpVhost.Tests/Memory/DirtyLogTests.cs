using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Memory;

/// <summary>
/// The dirty log as a migrating frontend sees it: its own mapping of the log memfd, read and cleared
/// while the device runs.
/// </summary>
public sealed class DirtyLogTests : IDisposable
{
    private const ulong MiB = 1 << 20;
    private const ulong Page = 4096;
    private readonly TestGuest _guest = new(MiB);
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _logFd;
    private readonly MemoryMapping _frontendView;
    private readonly ulong _logBytes;

    public DirtyLogTests()
    {
        _logBytes = (TestGuest.GpaBase + MiB) / Page / 8;
        _logFd = FileDescriptors.CreateMemfd("dirty-log", (long)_logBytes);
        _frontendView = MemoryMapping.Map(_logFd, 0, _logBytes, writable: true);
    }

    public void Dispose()
    {
        _guest.Dispose();
        _frontendView.Dispose();
        _logFd.Dispose();
    }

    /// <summary>A log as SET_LOG_BASE would hand it over: the backend's own mapping of the shared fd.</summary>
    private DirtyLog NewBackendLog() => new(MemoryMapping.Map(_logFd, 0, _logBytes, writable: true), 0, _logBytes);

    private bool Dirty(ulong gpa)
    {
        ulong page = gpa / Page;
        return (Volatile.Read(ref _frontendView.GetSpan(page / 8, 1)[0]) & (1 << (int)(page % 8))) != 0;
    }

    private void ClearLog() => _frontendView.GetSpan(0, (int)_logBytes).Clear();

    private List<ulong> DirtyPages()
    {
        var pages = new List<ulong>();
        for (ulong gpa = TestGuest.GpaBase; gpa < TestGuest.GpaBase + MiB; gpa += Page) if (Dirty(gpa)) pages.Add(gpa);
        return pages;
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void EveryByteTheDeviceWroteIsInADirtyPageLoggedBeforeTheUsedIndexExposesIt(MetadataAccess access)
    {
        var h = new QueueHarness(_guest, 16, access, usedLogGpa: 0, logUsed: true);
        var placement = h.Placement;
        h.Device.SetRings(QueueHarness.RingsFor(placement, placement.Used, logUsed: true));
        _guest.Domain.SetLog(NewBackendLog());
        var rng = new Random(3);
        var data = TestGuest.Gpa(0x20000);
        for (int round = 0; round < 200; round++)
        {
            // Driver: a few chains with writable buffers at random places (some crossing pages).
            int chains = rng.Next(1, 4);
            var heads = new List<ushort>();
            for (int c = 0; c < chains; c++)
            {
                ulong rd = data + (ulong)rng.Next(0, 0xC0000);
                ulong wr = data + (ulong)rng.Next(0, 0xC0000);
                uint rlen = (uint)rng.Next(1, 6000), wlen = (uint)rng.Next(1, 9000);
                rng.NextBytes(_guest.Bytes(rd, (int)rlen));
                Assert.True(h.Driver.TryAdd([new(rd, rlen, false), new(wr, wlen / 2, true), new(wr + wlen / 2 + 100, wlen - wlen / 2, true)], out ushort head));
                heads.Add(head);
            }
            h.Driver.Publish();
            // Snapshot all of guest memory: afterwards, every changed byte must be in a dirty page.
            var before = _guest.Bytes(TestGuest.GpaBase, (int)MiB).ToArray();
            ClearLog();
            ushort usedBefore = h.UsedIdxInRing;
            Assert.True(h.Attach());
            int popped = 0;
            while (h.Device.TryPop(h.Chain))
            {
                h.Device.AddUsed(h.Chain, Echo.Serve(h.Chain));
                // Not yet published, already logged: the writable buffers and the used element.
                Assert.Equal(usedBefore, h.UsedIdxInRing);
                foreach (var s in h.Chain.Writable)
                    for (ulong p = s.GuestAddress & ~(Page - 1); p < s.GuestAddress + s.Length; p += Page) Assert.True(Dirty(p));
                ulong element = placement.Used + SplitRingLayout.UsedRingOffset + (ulong)((h.Device.UsedIndex - 1) & (h.Size - 1)) * 8;
                Assert.True(Dirty(element) && Dirty(element + 7));
                popped++;
            }
            Assert.Equal(chains, popped);
            h.Device.FlushUsed();
            Assert.True(Dirty(placement.Used + SplitRingLayout.UsedIdxOffset));
            var after = _guest.Bytes(TestGuest.GpaBase, (int)MiB);
            int changed = 0;
            for (int i = 0; i < before.Length; i++)
                if (before[i] != after[i])
                {
                    changed++;
                    Assert.True(Dirty(TestGuest.GpaBase + (ulong)i), $"byte at {TestGuest.GpaBase + (ulong)i:x} changed in a clean page");
                }
            Assert.True(changed > 0);
            foreach (var head in heads) { Assert.True(h.Driver.TryGetUsed(out ushort id, out _)); Assert.Equal(head, id); }
        }
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void UsedRingWritesAreLoggedAtTheRingsLogAddressOnlyWhenAsked(MetadataAccess access)
    {
        var h = new QueueHarness(_guest, 8, access);
        ulong logAt = TestGuest.Gpa(0x80000); // the frontend's idea of the used ring's guest address
        _guest.Domain.SetLog(NewBackendLog());
        foreach (bool logUsed in new[] { false, true })
        {
            h.Device.SetRings(QueueHarness.RingsFor(h.Placement, logAt, logUsed));
            _guest.Domain.Invalidate();
            ClearLog();
            Assert.True(h.Driver.TryAdd([new(TestGuest.Gpa(0x20000), 8, false)], out _));
            h.Driver.Publish();
            Assert.True(h.Attach());
            Assert.True(h.Device.TryPop(h.Chain));
            h.Device.Push(h.Chain, 0); // no writable buffer
            h.Device.EventIndex = true;
            h.Device.EnableKicks(); // writes avail_event
            h.Device.EventIndex = false;
            h.Device.DisableKicks(); // writes used flags
            Assert.True(h.Driver.TryGetUsed(out _, out _));
            var pages = DirtyPages();
            if (logUsed)
            {
                ulong end = logAt + SplitRingLayout.UsedSize(8) - 1;
                Assert.Equal(Enumerable.Range(0, (int)((end / Page) - (logAt / Page) + 1)).Select(i => (logAt & ~(Page - 1)) + (ulong)i * Page), pages);
            }
            else Assert.Empty(pages);
        }
    }

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void LoggingSwitchesOnAndOffAtRunTimeWhileAWorkerRuns(MetadataAccess access)
    {
        var h = new QueueHarness(_guest, 8, access);
        h.Device.SetRings(QueueHarness.RingsFor(h.Placement, h.Placement.Used, logUsed: true));
        var domain = _guest.Domain;
        ulong data = TestGuest.Gpa(0x40000);
        // The driver (this thread) observes like a migrating frontend: when it sees a new used index,
        // the buffers it exposes must already be dirty if logging was on for the whole round trip.
        bool stop = false;
        Exception? failure = null;
        long served = 0;
        var worker = new Thread(() =>
        {
            try
            {
                using var reader = domain.RegisterReader();
                while (!Volatile.Read(ref stop))
                {
                    var mem = reader.Enter();
                    try
                    {
                        if (!h.Device.Attach(mem)) throw new InvalidOperationException(h.Device.BrokenReason);
                        while (h.Device.TryPop(h.Chain))
                        {
                            h.Device.AddUsed(h.Chain, Echo.Serve(h.Chain));
                            served++;
                        }
                        h.Device.FlushUsed();
                    }
                    finally { reader.Exit(); }
                }
            }
            catch (Exception e) { failure = e; }
        });
        worker.Start();
        var rng = new Random(5);
        int checkedWhileOn = 0;
        try
        {
            for (int phase = 0; phase < 6 && failure is null; phase++)
            {
                bool on = phase % 2 == 0;
                domain.SetLog(on ? NewBackendLog() : null); // the previous log is unmapped before this returns
                ClearLog();
                // With logging off, nothing may be marked any more: the worker's next section sees no log.
                for (int i = 0; i < 300 && failure is null; i++)
                {
                    ushort slot = (ushort)rng.Next(0, 8);
                    ulong wr = data + (ulong)slot * 0x4000 + (ulong)rng.Next(0, 0x1000);
                    rng.NextBytes(_guest.Bytes(data + 0x40000, 64));
                    Assert.True(h.Driver.TryAdd([new(data + 0x40000, 64, false), new(wr, 64, true)], out ushort head));
                    h.Driver.Publish();
                    ushort id; uint len;
                    var spin = new SpinWait();
                    while (!h.Driver.TryGetUsed(out id, out len))
                    {
                        if (failure is not null) break;
                        spin.SpinOnce();
                    }
                    if (failure is not null) break;
                    Assert.Equal((head, 64u), (id, len));
                    if (on)
                    {
                        Assert.True(Dirty(wr) && Dirty(wr + 63), "buffer exposed by the used index is not dirty");
                        checkedWhileOn++;
                        // The frontend syncs: clear the bits of what it just saw (its pages are not reused until re-added).
                        _frontendView.GetSpan(0, (int)_logBytes).Clear();
                    }
                    else Assert.Empty(DirtyPages());
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            worker.Join();
        }
        Assert.Null(failure);
        Assert.Equal(900, checkedWhileOn);
        Assert.Equal(1800, served);
    }

    [Fact]
    public void MarkCoversEveryTouchedPageAndIgnoresWhatLiesBeyondTheLog()
    {
        using var log = NewBackendLog();
        ClearLog();
        log.Mark(TestGuest.GpaBase + Page - 1, 2); // two pages
        Assert.True(Dirty(TestGuest.GpaBase) && Dirty(TestGuest.GpaBase + Page));
        Assert.False(Dirty(TestGuest.GpaBase + 2 * Page));
        Assert.True(log.IsMarked(TestGuest.GpaBase + Page));
        log.Mark(TestGuest.GpaBase + 5 * Page, 0); // nothing
        Assert.False(Dirty(TestGuest.GpaBase + 5 * Page));
        log.Mark(ulong.MaxValue - 10, 100); // wraps: marks to the end of the log, which is nothing here
        log.Mark(TestGuest.GpaBase + MiB + 64 * MiB, 4096); // beyond the log
        Assert.Equal(2, DirtyPages().Count);
        // The last page the log covers.
        ulong lastPage = (_logBytes * 8 - 1) * Page;
        log.Mark(lastPage, Page * 10);
        Assert.True(log.IsMarked(lastPage));
        Assert.False(log.IsMarked(lastPage + Page));
        Assert.Throws<GuestMemoryException>(() => new DirtyLog(_frontendView, 1, _logBytes));
    }

    [Fact]
    public void GuestMemoryWritesAreLoggedAndReadOnlyRegionsNeverWritten()
    {
        using var guest = new TestGuest(MiB, new RegionSpec(0, MiB / 2), new RegionSpec(MiB / 2, MiB / 2, Writable: false));
        guest.Domain.SetLog(NewBackendLog());
        ClearLog();
        var mem = guest.Domain.Current;
        mem.Write(TestGuest.Gpa(0x3000), 42L);
        Assert.True(Dirty(TestGuest.Gpa(0x3000)));
        mem.CopyTo(TestGuest.Gpa(0x4FFF), new byte[3]);
        Assert.True(Dirty(TestGuest.Gpa(0x4000)) && Dirty(TestGuest.Gpa(0x5000)));
        Assert.Equal(3, DirtyPages().Count);
        Assert.Throws<GuestMemoryException>(() => mem.Write(TestGuest.Gpa(MiB / 2), 1));
        Assert.Throws<GuestMemoryException>(() => mem.CopyTo(TestGuest.Gpa(MiB / 2) - 2, new byte[4]));
        Assert.Throws<GuestMemoryException>(() => mem.GetSpan(TestGuest.Gpa(MiB / 2), 1, write: true));
        Assert.Equal(0, mem.GetSpan(TestGuest.Gpa(MiB / 2), 1, write: false)[0]);
        Assert.Equal(42L, mem.Read<long>(TestGuest.Gpa(0x3000)));
    }
}
