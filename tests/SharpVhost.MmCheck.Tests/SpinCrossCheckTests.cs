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
    [InlineData(1, false, 0)]
    [InlineData(1, true, 0)]
    [InlineData(2, false, 1)]
    [InlineData(2, true, 1)]
    public void SpinAndMmcheckAgree(int rounds, bool fix, int specs)
    {
        var spin = SpinBench.RunSpin(Promela, rounds, fix, specs, specPasses: 2, optimize: false);
        var mm = Checker.Check(SpinBench.CoreScenario(rounds, fix, specs, specPasses: 2), new CheckOptions { Threads = 1 });
        Assert.True(spin.States > 0, spin.Output);
        Assert.Equal(mm.Verdict == Verdict.Violation, spin.Violation);
        // The review's claim, with and without the fix, as both tools find it.
        Assert.Equal(!fix, spin.Violation);
    }
}
