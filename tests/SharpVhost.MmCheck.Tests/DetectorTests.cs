using SharpVhost.MmCheck.Model;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tests;

/// <summary>Each detector fires on a hand-built interleaving (or state), and only at the step that breaks the rule.</summary>
public class DetectorTests
{
    private static string[] Seq(string spec) =>
        spec.Split(' ', StringSplitOptions.RemoveEmptyEntries).SelectMany(w =>
        {
            int star = w.IndexOf('*');
            return star < 0 ? [w] : Enumerable.Repeat(w[..star], int.Parse(w[(star + 1)..]));
        }).ToArray();

    private static void AssertFiresLast(Driver d, string[] seq, Rule rule)
    {
        d.Steps(seq[..^1]);
        Assert.Null(d.Violation);
        d.Step(seq[^1]);
        Assert.Equal(rule, d.Violation);
    }

    [Fact]
    public void Ext4BugOnDirtyPageWithoutBuffers()
    {
        // V1 pins; writeback starts; reclaim unmaps, writes, frees the buffers, cannot free the pinned page;
        // the worker dirties at unpin; writeback's writepage meets a dirty page with no buffers.
        var sc = new Scenario
        {
            Strategy = Strategy.GupLongterm, Page = PageKind.Ext4, Rounds = 1,
            Operations = [new(OperationKind.Writeback, 2), new(OperationKind.Reclaim)],
        };
        var seq = Seq("worker*7 writeback reclaim*8 worker*2 writeback*4");
        var d = new Driver(sc);
        d.Steps(seq[..^4]);
        Assert.False(d.Has(0, PageFlags.Buffers));
        Assert.True(d.Has(0, PageFlags.Dirty));
        AssertFiresLast(new Driver(sc with { Checks = new HashSet<Rule> { Rule.Ext4NoBuffersBug } }), seq, Rule.Ext4NoBuffersBug);
    }

    [Fact]
    public void LostWriteWhenTheWorkerMapsDuringAnInvalidation()
    {
        // Merged version without its guard: the worker maps the page between invalidate_range_start and
        // page_mkclean's write-protect, then writes through the vmap.
        var sc = new Scenario
        {
            Strategy = Strategy.MergedV53, Guard = false, Page = PageKind.Ext4, Rounds = 2,
            Operations = [new(OperationKind.Writeback, 2)],
        };
        AssertFiresLast(new Driver(sc), Seq("worker*7 writeback*4 worker*5 writeback worker"), Rule.LostWrite);
    }

    [Fact]
    public void LostWriteIsNotReportedWhenAFaultRanPageMkwriteFirst()
    {
        var sc = new Scenario
        {
            Strategy = Strategy.CopyUser, Page = PageKind.Ext4, Rounds = 2,
            Operations = [new(OperationKind.Writeback, 1)],
        };
        var d = new Driver(sc).RunAlone("worker").RunAlone("writeback");
        Assert.Null(d.Violation);
    }

    [Fact]
    public void CounterStuckWhenSetVringAddrMissesAnEnd()
    {
        var sc = new Scenario
        {
            Strategy = Strategy.MergedV53, Page = PageKind.Ext4, Rounds = 2,
            Operations = [new(OperationKind.Writeback, 2), new(OperationKind.SetVringAddr)],
            Checks = new HashSet<Rule> { Rule.InvalidateCounter },
        };
        var d = new Driver(sc);
        d.Steps(Seq("worker*7 writeback*4 worker*8 writeback set-vring-addr*2 writeback*5 set-vring-addr*3"));
        Assert.True(d.M.AllDone(d.S));
        Assert.Equal(1, d.InvCount);
        Assert.Equal(Rule.InvalidateCounter, d.M.CheckTerminal(d.S)?.Rule);
    }

    [Fact]
    public void CounterNegativeIsReportedAtTheEnd()
    {
        var m = new Scenario { Strategy = Strategy.MergedV53, Page = PageKind.Anon, Operations = [new(OperationKind.Munmap)] }.Build();
        var d = new Driver(m);
        d.S[m.Kernel.Registered] = 0; // as if the notifier were registered after the start
        d.Step("munmap").Step("munmap");
        d.S[m.Kernel.Registered] = 1;
        d.Step("munmap");
        Assert.Equal(Rule.InvalidateCounter, d.Violation);
        Assert.Equal(-1, d.InvCount);
    }

    [Fact]
    public void SleepInNonBlockingNotifier()
    {
        var sc = new Scenario { Strategy = Strategy.MergedV53, Page = PageKind.Anon, Rounds = 2, Operations = [new(OperationKind.OomReaper)] };
        AssertFiresLast(new Driver(sc), Seq("worker*5 oom-reaper*2"), Rule.SleepInNonblockingNotifier);
    }

    [Fact]
    public void DeadlockBetweenVqMutexAndPageLock()
    {
        var sc = new Scenario { Strategy = Strategy.NotifierDirtyAfterRound, Page = PageKind.Ext4, Rounds = 2, Operations = [new(OperationKind.Writeback)] };
        var d = new Driver(sc).Steps(Seq("worker*11 writeback*3"));
        Assert.Null(d.Violation);
        Assert.False(d.CanStep("worker"));
        Assert.False(d.CanStep("writeback"));
        Assert.Equal(Rule.Deadlock, d.M.CheckTerminal(d.S)?.Rule);
    }

    [Fact]
    public void UseAfterFreeOnAFreedPageAndOnATornDownVmap()
    {
        var m = new Scenario { Strategy = Strategy.CopyUser, Page = PageKind.Anon }.Build();
        var k = m.Kernel;
        var x = new Exec(m.Checked);
        var s = m.Initial;
        s[k.Flags[0]] = (byte)(PageFlags.Allocated | PageFlags.Freed);
        x.Reset(s);
        k.AliasWrite(x, 0, "test");
        Assert.Equal(Rule.UseAfterFree, x.Violation);

        s = m.Initial;
        s[k.Vmap] = 0; // torn down
        x.Reset(s);
        k.VmapWrite(x, 1, "test");
        Assert.Equal(Rule.UseAfterFree, x.Violation);

        x.Reset(m.Initial);
        k.PutPage(x, 0);
        k.PutPage(x, 0);
        Assert.Equal(Rule.UseAfterFree, x.Violation);
    }

    [Fact]
    public void UncheckedRulesAreIgnored()
    {
        var m = new Scenario { Strategy = Strategy.CopyUser, Page = PageKind.Anon, Checks = new HashSet<Rule> { Rule.Deadlock } }.Build();
        var x = new Exec(m.Checked);
        var s = m.Initial;
        s[m.Kernel.Vmap] = 0;
        x.Reset(s);
        m.Kernel.VmapWrite(x, 1, "test");
        Assert.Null(x.Violation);
    }

    [Fact]
    public void StepsRecordTheirFootprints()
    {
        var m = new Scenario { Strategy = Strategy.CopyUser, Page = PageKind.Ext4, Operations = [new(OperationKind.Speculative)] }.Build();
        var list = new List<Successor>();
        m.Successors(m.Initial, list);
        var spec = list.Single(t => t.Actor == 1);
        Assert.NotEqual(0UL, spec.Writes & (1UL << m.Kernel.Ref[0]));
        var worker = list.Single(t => t.Actor == 0);
        Assert.False(worker.IndependentOf(spec)); // both touch page 0's refcount
    }
}
