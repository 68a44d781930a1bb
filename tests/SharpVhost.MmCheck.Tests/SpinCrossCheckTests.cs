using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Tool;

namespace SharpVhost.MmCheck.Tests;

/// <summary>
/// The core scenario in Promela (promela/core.pml) run by Spin gives the same verdicts as mmcheck.
/// Spin is a required peer: without it these tests fail (scripts/install-deps.sh installs it).
/// </summary>
public class SpinCrossCheckTests
{
    private static string Promela => Path.Combine(ScenarioTests.Root, "promela", "core.pml");

    [Theory]
    [InlineData(1, false)]
    [InlineData(1, true)]
    [InlineData(2, false)]
    [InlineData(2, true)]
    public void SpinAndMmcheckAgree(int rounds, bool fix)
    {
        var spin = SpinBench.RunSpin(Promela, rounds, fix);
        var mm = Checker.Check(SpinBench.CoreScenario(rounds, fix), new CheckOptions { Threads = 1 });
        Assert.True(spin.States > 0, spin.Output);
        Assert.Equal(mm.Verdict == Verdict.Violation, spin.Violation);
        // The review's claim, with and without the fix, as both tools find it.
        Assert.Equal(!fix, spin.Violation);
    }

    [Fact]
    public void SpinAndMmcheckAgreeWithSpeculativeLookups()
    {
        var spin = SpinBench.RunSpin(Promela, 1, fix: false, specs: 1, specPasses: 2);
        var mm = Checker.Check(SpinBench.CoreScenario(1, fix: false, specs: 1, specPasses: 2), new CheckOptions { Threads = 1 });
        Assert.Equal(mm.Verdict == Verdict.Violation, spin.Violation);
    }
}
