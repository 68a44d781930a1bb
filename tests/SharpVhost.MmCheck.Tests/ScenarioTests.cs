using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Model;
using SharpVhost.MmCheck.Scenarios;
using SharpVhost.MmCheck.Tool;

namespace SharpVhost.MmCheck.Tests;

/// <summary>Every file in scenarios/ parses and the model's verdict is the one its author wrote down.</summary>
public class ScenarioTests
{
    public static string Root
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (Directory.Exists(Path.Combine(d.FullName, "scenarios")) && File.Exists(Path.Combine(d.FullName, "SharpVhost.slnx")))
                    return d.FullName;
            throw new DirectoryNotFoundException("repository root with scenarios/ not found");
        }
    }

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(Root, "scenarios"), "*.scn").OrderBy(f => f))
            data.Add(Path.GetFileName(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void VerdictMatchesExpectation(string file)
    {
        var sc = ScenarioParser.ParseFile(Path.Combine(Root, "scenarios", file));
        Assert.NotNull(sc.Expect);
        var r = Checker.Check(sc, new CheckOptions { Threads = 2 });
        string got = r.Verdict == Verdict.Safe ? "safe" : "violation " + r.Counterexample.Rule?.Name();
        Assert.Equal(sc.Expect, got);
        Assert.False(r.Search.BoundHit);
        if (r.Verdict == Verdict.Violation)
        {
            Assert.NotEmpty(r.Counterexample.Trace);
            Assert.True(r.Counterexample.Trace.Count <= r.Search.Trace.Count || r.Search.Trace.Count == 0);
        }
    }

    [Fact]
    public void ThereAreScenariosForEveryOpenQuestion()
    {
        var names = Directory.GetFiles(Path.Combine(Root, "scenarios"), "*.scn").Select(Path.GetFileName).ToList();
        foreach (var q in new[] { "core.scn", "core-fixed.scn", "q1-late-pin.scn", "q2-odirect-window.scn", "q3-no-guard.scn", "q3-guard.scn", "q4-counter.scn", "q4-oom-sleep.scn" })
            Assert.Contains(q, names);
    }

    [Theory]
    [InlineData("strategy: gup-longterm\nbogus: 1\n", 2, "unknown key 'bogus'")]
    [InlineData("strategy: nope\n", 1, "unknown strategy")]
    [InlineData("# comment\nstrategy: copy-user\npage: zfs\n", 3, "unknown page kind")]
    [InlineData("strategy: copy-user\nactors: writeback, flying\n", 2, "unknown actor 'flying'")]
    [InlineData("strategy: copy-user\nrounds: 0\n", 2, "expected a number")]
    [InlineData("strategy: copy-user\nthis line has no colon\n", 2, "expected 'key: value'")]
    [InlineData("strategy: copy-user\ncheck: everything\n", 2, "unknown rule")]
    [InlineData("strategy: copy-user\nstrategy: copy-user\n", 2, "given twice")]
    [InlineData("page: ext4\n", 2, "missing 'strategy:'")]
    [InlineData("strategy: copy-user\nactors: reclaim x2\n", 2, "take a count")]
    public void BadFilesNameTheLine(string text, int line, string message)
    {
        var e = Assert.Throws<ScenarioException>(() => ScenarioParser.Parse(text, "t.scn"));
        Assert.Contains($"t.scn:{line}:", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void ParsesEveryKey()
    {
        var sc = ScenarioParser.Parse("""
            name: x  # trailing comment
            strategy: merged-v5.3
            page: anon
            rounds: 3
            actors: writeback x2, speculative x3, reclaim
            fixes: refuse-pinned-free-buffers, reset-invalidate-count
            guard: off
            check: lost-write, deadlock
            max-steps: 50
            max-preemptions: 2
            expect: violation deadlock
            """);
        Assert.Equal("x", sc.Name);
        Assert.Equal(Strategy.MergedV53, sc.Strategy);
        Assert.Equal(PageKind.Anon, sc.Page);
        Assert.Equal(3, sc.Rounds);
        Assert.Equal([new(OperationKind.Writeback, 2), new(OperationKind.Speculative, 3), new(OperationKind.Reclaim, 1)], sc.Operations);
        Assert.Equal(Fixes.RefusePinnedFreeBuffers | Fixes.ResetInvalidateCount, sc.Fixes);
        Assert.False(sc.Guard);
        Assert.Equal(new HashSet<Rule> { Rule.LostWrite, Rule.Deadlock }, sc.Checks);
        Assert.Equal(50, sc.MaxSteps);
        Assert.Equal(2, sc.MaxPreemptions);
        Assert.Equal("violation deadlock", sc.Expect);
    }
}
