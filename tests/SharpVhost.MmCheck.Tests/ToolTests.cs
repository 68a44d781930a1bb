using System.Text.Json;
using SharpVhost.MmCheck.Tool;

namespace SharpVhost.MmCheck.Tests;

/// <summary>The command's contract: exit codes, text and JSON output, the matrix.</summary>
public class ToolTests
{
    private static (int Code, string Out, string Err) Run(MmCheckRequest req)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = MmCheckTool.Run(req with { Options = req.Options with { OnProgress = _ => { } } }, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static string Scn(string name) => Path.Combine(ScenarioTests.Root, "scenarios", name);

    [Fact]
    public void ViolationExitsOneWithAPerCpuTrace()
    {
        var (code, output, _) = Run(new MmCheckRequest { ScenarioPath = Scn("core.scn") });
        Assert.Equal(ExitCodes.Violation, code);
        Assert.Contains("VIOLATION ext4-no-buffers-bug", output);
        Assert.Contains("cpu0 worker", output);
        Assert.Contains("cpu2 reclaim", output);
        Assert.Contains("try_to_free_buffers", output);
    }

    [Fact]
    public void SafeExitsZero()
    {
        var (code, output, _) = Run(new MmCheckRequest { ScenarioPath = Scn("core-fixed.scn") });
        Assert.Equal(ExitCodes.Safe, code);
        Assert.Contains("SAFE", output);
    }

    [Fact]
    public void BadScenarioExitsTwoNamingTheLine()
    {
        string f = Path.Combine(Path.GetTempPath(), $"mmcheck-bad-{Guid.NewGuid():N}.scn");
        File.WriteAllText(f, "strategy: copy-user\npage: ext4\nrounds: many\n");
        try
        {
            var (code, _, err) = Run(new MmCheckRequest { ScenarioPath = f });
            Assert.Equal(ExitCodes.BadScenario, code);
            Assert.Contains(":3:", err);
        }
        finally { File.Delete(f); }
        Assert.Equal(ExitCodes.BadScenario, Run(new MmCheckRequest { ScenarioPath = "/nonexistent.scn" }).Code);
    }

    [Fact]
    public void JsonHasVerdictRuleStatesAndTrace()
    {
        var (code, output, _) = Run(new MmCheckRequest { ScenarioPath = Scn("core.scn"), Json = true });
        Assert.Equal(1, code);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal("violation", root.GetProperty("verdict").GetString());
        Assert.Equal("ext4-no-buffers-bug", root.GetProperty("rule").GetString());
        Assert.True(root.GetProperty("states").GetInt64() > 0);
        var trace = root.GetProperty("trace");
        Assert.True(trace.GetArrayLength() > 0);
        Assert.Equal("worker", trace[0].GetProperty("actor").GetString());

        var (_, safe, _) = Run(new MmCheckRequest { ScenarioPath = Scn("core-fixed.scn"), Json = true });
        using var d2 = JsonDocument.Parse(safe);
        Assert.Equal("safe", d2.RootElement.GetProperty("verdict").GetString());
        Assert.Equal(JsonValueKind.Null, d2.RootElement.GetProperty("rule").ValueKind);
        Assert.Equal(0, d2.RootElement.GetProperty("trace").GetArrayLength());
    }

    [Fact]
    public void MatrixCoversEveryCombinationAndFindsTheReviewedBug()
    {
        var cells = MatrixRunner.Run(new CheckOptions { Threads = 2 }, null);
        Assert.Equal(6 * 4 * MatrixRunner.Columns.Length, cells.Count);
        var v1 = cells.Single(c => c.Strategy == Scenarios.Strategy.GupLongterm && c.Page == Model.PageKind.Ext4 && c.Column == "reclaim");
        Assert.Contains(v1.PerRule, p => p.Rule == Model.Rule.Ext4NoBuffersBug);
        var text = MatrixRunner.Text(cells);
        Assert.Contains("page kind: hugetlbfs", text);
        using var doc = JsonDocument.Parse(MatrixRunner.Json(cells));
        Assert.Equal(cells.Count, doc.RootElement.GetArrayLength());
    }
}
