using SharpVhost.MmCheck.Model;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tests;

/// <summary>Each kernel operation run alone (or in a fixed order) leaves the page in the state the kernel would.</summary>
public class OperationTests
{
    private static Scenario With(PageKind kind, Strategy strategy, params OperationSpec[] ops) => new()
    {
        Strategy = strategy,
        Page = kind,
        Rounds = 1,
        Operations = ops,
    };

    private static OperationSpec Op(OperationKind k, int passes = 1) => new(k, passes);

    [Fact]
    public void InitialExt4PageIsCachedCleanWithBuffersAndMappedReadOnly()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.CopyUser));
        Assert.Equal(PageFlags.Allocated | PageFlags.InCache | PageFlags.Buffers, d.Flags(0));
        Assert.Equal(2, d.Ref(0));
        Assert.Equal(1, d.PtePage);
        Assert.Equal(PteFlags.None, d.Pte);
    }

    [Fact]
    public void WriteFaultOnExt4RunsPageMkwrite()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.CopyUser)).RunAlone("worker");
        Assert.Contains(d.Labels, l => l.Contains("ext4_page_mkwrite"));
        Assert.True(d.Has(0, PageFlags.Dirty));
        Assert.True(d.Has(0, PageFlags.Buffers));
        Assert.False(d.Has(0, PageFlags.Locked));
        Assert.Equal(PteFlags.Writable | PteFlags.Dirty, d.Pte);
        Assert.Equal(2, d.Ref(0));
    }

    [Fact]
    public void WriteFaultOnReadOnlyAnonPteJustMakesItWritable()
    {
        var m = With(PageKind.Anon, Strategy.CopyUser).Build();
        var d = new Driver(m);
        d.S[m.Kernel.PteFlagsField] = 0;
        d.RunAlone("worker");
        Assert.Contains(d.Labels, l => l.Contains("do_wp_page: make pte writable"));
        Assert.Equal(PteFlags.Writable | PteFlags.Dirty, d.Pte);
    }

    [Fact]
    public void WritebackCleansWriteProtectsAndReleasesThePage()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.CopyUser, Op(OperationKind.Writeback))).RunAlone("worker").RunAlone("writeback");
        Assert.Contains(d.Labels, l => l.Contains("page_mkclean_one"));
        Assert.False(d.Has(0, PageFlags.Dirty));
        Assert.False(d.Has(0, PageFlags.Writeback));
        Assert.False(d.Has(0, PageFlags.Locked));
        Assert.True(d.Has(0, PageFlags.WriteProtected));
        Assert.Equal(PteFlags.None, d.Pte);
        Assert.Equal(2, d.Ref(0));
        Assert.Equal(0, d.Get(d.K.Active));
    }

    [Fact]
    public void WritebackHasNothingToDoForAnonTmpfsHugetlbfs()
    {
        foreach (var k in new[] { PageKind.Anon, PageKind.Tmpfs, PageKind.Hugetlbfs })
        {
            var d = new Driver(With(k, Strategy.CopyUser, Op(OperationKind.Writeback)));
            Assert.False(d.CanStep("writeback"));
        }
    }

    [Fact]
    public void ReclaimFreesAnUnpinnedCleanPage()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.CopyUser, Op(OperationKind.Reclaim))).RunAlone("reclaim");
        Assert.True(d.Has(0, PageFlags.Freed));
        Assert.Equal(0, d.Ref(0));
        Assert.Equal(0, d.PtePage);
        Assert.Contains(d.Labels, l => l.Contains("__remove_mapping: page_ref_freeze(2), delete from cache"));
    }

    [Fact]
    public void ReclaimOfAPinnedPageFreesBuffersButKeepsThePage()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.GupLongterm, Op(OperationKind.Reclaim)));
        d.Steps("worker", "worker", "worker", "worker", "worker"); // fault in writable, pin
        Assert.Equal(1, d.Pin(0));
        d.RunAlone("reclaim");
        Assert.False(d.Has(0, PageFlags.Freed));
        Assert.False(d.Has(0, PageFlags.Buffers));
        Assert.False(d.Has(0, PageFlags.Dirty)); // pageout wrote it
        Assert.Contains(d.Labels, l => l.Contains("page_ref_freeze(2) fails"));
    }

    [Fact]
    public void RefusePinnedFreeBuffersKeepsTheBuffers()
    {
        var sc = With(PageKind.Ext4, Strategy.GupLongterm, Op(OperationKind.Reclaim)) with { Fixes = Fixes.RefusePinnedFreeBuffers };
        var d = new Driver(sc).Steps("worker", "worker", "worker", "worker", "worker").RunAlone("reclaim");
        Assert.True(d.Has(0, PageFlags.Buffers));
        Assert.Contains(d.Labels, l => l.Contains("refuses: page_maybe_dma_pinned"));
    }

    [Fact]
    public void ReclaimSwapsAnonPagesOutToASwapEntry()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.CopyUser, Op(OperationKind.Reclaim))).RunAlone("reclaim");
        Assert.Contains(d.Labels, l => l.Contains("add_to_swap"));
        Assert.True(d.Has(0, PageFlags.Freed));
        Assert.Equal(PteFlags.SwapEntry, d.Pte);
        // The next write faults the page back in from swap into a new frame.
        d.RunAlone("worker");
        Assert.Contains(d.Labels, l => l.Contains("read page back from swap"));
        Assert.Equal(2, d.PtePage);
    }

    [Fact]
    public void HugetlbPagesAreNotReclaimed()
    {
        var d = new Driver(With(PageKind.Hugetlbfs, Strategy.CopyUser, Op(OperationKind.Reclaim)));
        Assert.False(d.CanStep("reclaim"));
    }

    [Fact]
    public void MigrationMovesThePageAndItsState()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.CopyUser, Op(OperationKind.Migration))).RunAlone("worker").RunAlone("migration");
        Assert.True(d.Has(0, PageFlags.Freed));
        Assert.Equal(2, d.PtePage);
        Assert.Equal(PageFlags.Allocated | PageFlags.InCache | PageFlags.Buffers | PageFlags.Dirty, d.Flags(1));
        Assert.Equal(2, d.Ref(1));
        Assert.True((d.Pte & PteFlags.Writable) != 0);
    }

    [Fact]
    public void MigrationBacksOutOfAPinnedPage()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.GupLongterm, Op(OperationKind.Migration))).Steps("worker").RunAlone("migration");
        Assert.Contains(d.Labels, l => l.Contains("page_ref_freeze fails"));
        Assert.Equal(1, d.PtePage);
        Assert.False(d.Has(0, PageFlags.Freed));
        Assert.Equal(PageFlags.None, d.Flags(1));
    }

    [Fact]
    public void ModernKernelsRefuseToUnmapPinnedAnonPages()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.PinLongterm, Op(OperationKind.Migration))).Steps("worker").RunAlone("migration");
        Assert.Contains(d.Labels, l => l.Contains("pinned anon-exclusive page, abort"));
    }

    [Fact]
    public void MunmapZapsThePteAndKillsTheVma()
    {
        var d = new Driver(With(PageKind.Tmpfs, Strategy.CopyUser, Op(OperationKind.Munmap))).RunAlone("munmap");
        Assert.Equal(0, d.PtePage);
        Assert.Equal(0, d.Get(d.K.VmaLive));
        Assert.Equal(1, d.Ref(0));
        d.RunAlone("worker");
        Assert.Contains(d.Labels, l => l.Contains("-EFAULT"));
    }

    [Fact]
    public void SpeculativeLookupTakesAndDropsAReference()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.CopyUser, Op(OperationKind.Speculative))).Step("speculative");
        Assert.Equal(3, d.Ref(0));
        d.Step("speculative");
        Assert.Equal(2, d.Ref(0));
    }

    [Fact]
    public void SpeculativeLookupFailsOnAFrozenPage()
    {
        var m = With(PageKind.Ext4, Strategy.CopyUser, Op(OperationKind.Speculative)).Build();
        var d = new Driver(m);
        d.S[m.Kernel.Ref[0]] = 0;
        d.Step("speculative");
        Assert.Contains("frozen", d.Labels[0]);
    }

    [Fact]
    public void ODirectPinsDmasDirtiesAndUnpins()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.CopyUser, Op(OperationKind.ODirect))).Step("odirect");
        Assert.Equal(1, d.Pin(0));
        d.RunAlone("odirect");
        Assert.Equal(0, d.Pin(0));
        Assert.Equal(1, d.Ref(0));
        Assert.True(d.Has(0, PageFlags.Dirty));
    }

    [Fact]
    public void OomReaperZapsAnonMemoryOnly()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.CopyUser, Op(OperationKind.OomReaper))).RunAlone("oom-reaper");
        Assert.Equal(0, d.PtePage);
        Assert.True(d.Has(0, PageFlags.Freed));
        Assert.False(new Driver(With(PageKind.Ext4, Strategy.CopyUser, Op(OperationKind.OomReaper))).CanStep("oom-reaper"));
    }

    [Fact]
    public void SetVringAddrReRegistersTheNotifier()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.MergedV53, Op(OperationKind.SetVringAddr)));
        Assert.Equal(1, d.Get(d.K.Registered));
        d.Steps("set-vring-addr", "set-vring-addr");
        Assert.Equal(0, d.Get(d.K.Registered));
        d.RunAlone("set-vring-addr");
        Assert.Equal(1, d.Get(d.K.Registered));
        Assert.Equal(0, d.Get(d.K.VqMutex));
    }

    [Fact]
    public void MergedWorkerMapsOnlyWhenNoInvalidationIsInProgress()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.MergedV53, Op(OperationKind.Migration)));
        d.Steps("migration", "migration", "migration"); // isolate, lock, invalidate_range_start
        Assert.Equal(1, d.InvCount);
        d.Steps("worker", "worker", "worker", "worker");
        Assert.Contains("invalidate_count != 0, give up", d.Labels[^1]);
        Assert.Equal(0, d.Get(d.K.VqMap));
    }

    [Fact]
    public void MergedInvalidationDirtiesUnmapsAndWaitsForReaders()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.MergedV53, Op(OperationKind.Munmap)) with { Rounds = 2 });
        d.Steps("worker", "worker", "worker", "worker", "worker", "worker"); // round 1: copy_to_user then map
        Assert.Equal(1, d.Get(d.K.VqMap));
        d.Steps("worker", "worker"); // round 2: mutex, rcu_read_lock + dereference
        Assert.Equal(1, d.Get(d.K.Rcu));
        d.Step("munmap"); // start: ++count, dirty, clear map
        Assert.Equal(0, d.Get(d.K.VqMap));
        Assert.True(d.Has(0, PageFlags.Dirty));
        Assert.False(d.CanStep("munmap")); // synchronize_rcu waits for the reader
        d.Step("worker");
        d.Steps("munmap", "munmap", "munmap", "munmap");
        Assert.Equal(0, d.Get(d.K.Vmap));
        Assert.Equal(0, d.InvCount);
    }

    [Fact]
    public void IntervalNotifierRetriesWhenAnInvalidationIntervenes()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.IntervalNotifier, Op(OperationKind.Migration)));
        d.Steps("worker", "worker", "worker"); // no map; read_begin; gup + vmap
        d.Steps("migration", "migration", "migration"); // isolate, lock, start: seq++
        Assert.Equal(1, d.Get(d.K.Seq));
        d.Steps("migration", "migration");
        d.Step("worker");
        Assert.Contains("read_retry: retry", d.Labels[^1]);
        Assert.Equal(0, d.Get(d.K.VqMap));
    }

    [Fact]
    public void GupLongtermV1DirtiesAtUnpin()
    {
        var d = new Driver(With(PageKind.Anon, Strategy.GupLongterm)).RunAlone("worker");
        Assert.Contains(d.Labels, l => l.Contains("set_page_dirty, unlock_page"));
        Assert.Equal(0, d.Pin(0));
        Assert.Equal(1, d.Ref(0));
        Assert.Equal(0, d.Get(d.K.Vmap));
    }

    [Fact]
    public void ModernLongtermPinIsRefusedOnExt4()
    {
        var d = new Driver(With(PageKind.Ext4, Strategy.PinLongterm)).RunAlone("worker");
        Assert.Contains("refused on a file mapping", d.Labels[0]);
        Assert.Contains(d.Labels, l => l.Contains("copy_to_user(used ring)"));
        Assert.Equal(0, d.Pin(0));
    }

    [Fact]
    public void RfcV2DirtiesAfterEachRound()
    {
        var sc = With(PageKind.Anon, Strategy.NotifierDirtyAfterRound) with { Rounds = 2 };
        var d = new Driver(sc).RunAlone("worker");
        Assert.Contains(d.Labels, l => l.Contains("set_page_dirty_lock: lock_page"));
        Assert.Equal(1, d.Get(d.K.VqMap));
    }
}
