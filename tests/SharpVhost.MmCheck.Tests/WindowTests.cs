using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Scenarios;
using SharpVhost.MmCheck.Tool;

namespace SharpVhost.MmCheck.Tests;

/// <summary>The race-window measurement behind the O_DIRECT question.</summary>
public class WindowTests
{
    private static Scenario File(string name) => ScenarioParser.ParseFile(Path.Combine(ScenarioTests.Root, "scenarios", name));

    [Fact]
    public void V1AndODirectNeedTheSameForeignStepsInsideTheirWindows()
    {
        var v1 = File("core.scn").Build();
        var od = File("q2-odirect-window.scn").Build();
        var a = WindowSearch.Measure(v1, 0);
        var b = WindowSearch.Measure(od, od.Actors.ToList().FindIndex(x => x.Name == "odirect"));
        Assert.NotNull(a);
        Assert.NotNull(b);
        Assert.Equal(a.ForeignSteps, b.ForeignSteps);
        Assert.True(b.OwnWindowSteps <= a.OwnWindowSteps);
        Assert.Contains(a.Trace, t => t.Label.Contains("try_to_free_buffers"));
    }

    [Fact]
    public void NoWindowWhenNoRuleCanBreak()
    {
        var m = File("core-fixed.scn").Build();
        Assert.Null(WindowSearch.Measure(m, 0));
    }

    [Fact]
    public void HitRateIsAShare()
    {
        var sc = File("core.scn");
        double r = WindowSearch.HitRate(sc.Build, 2000, 200, 3);
        Assert.InRange(r, 0.0001, 0.5);
        Assert.Equal(0, WindowSearch.HitRate(File("core-fixed.scn").Build, 500, 200, 3));
    }

    [Fact]
    public void ReportMentionsEachPinner()
    {
        string text = MmCheckTool.WindowReport(File("q2-odirect-window.scn"));
        Assert.Contains("window of odirect: at least", text);
        Assert.Contains("random walks", text);
    }
}
