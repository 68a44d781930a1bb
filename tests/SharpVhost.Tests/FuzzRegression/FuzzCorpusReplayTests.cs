using SharpVhost.Fuzz;
using SharpVhost.Tests.Protocol;

namespace SharpVhost.Tests.FuzzRegression;

/// <summary>
/// Replays every committed fuzz input through its target in-process, on every test run: the corpora
/// (<c>fuzz/corpus/&lt;target&gt;/</c>: seeds and what afl-fuzz kept) and the regressions
/// (<c>fuzz/regressions/&lt;target&gt;/</c>: inputs that once crashed or hung a target, kept after the fix).
/// A target must return normally for each; its oracles (round trips, accessor agreement, no fd or
/// mapping leaked) apply as under the fuzzer. Runs alone: the session target counts open fds.
/// </summary>
[Collection(FdCountingCollection.Name)]
public sealed class FuzzCorpusReplayTests
{
    public static TheoryData<string> Targets() => [.. FuzzTargets.Names];

    [Theory]
    [MemberData(nameof(Targets))]
    public void Every_corpus_and_regression_input_passes_its_target(string name)
    {
        var target = FuzzTargets.Create(name);
        if (target is SessionTarget session) session.CheckMappingsEveryRun = true;
        var files = InputsOf(name);
        Assert.NotEmpty(files); // every target has committed seeds

        var failures = new List<string>();
        foreach (string file in files)
        {
            try { target.Run(File.ReadAllBytes(file)); }
            catch (Exception e) { failures.Add($"{Path.GetRelativePath(RepoRoot, file)}: {e.GetType().Name}: {e.Message}"); }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {files.Count} inputs failed:\n{string.Join("\n", failures)}");
    }

    [Fact]
    public void Every_target_has_a_corpus_folder_and_nothing_else_does()
    {
        var folders = Directory.GetDirectories(Path.Combine(RepoRoot, "fuzz", "corpus")).Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(FuzzTargets.Names.Order().ToArray(), folders);
    }

    [Fact]
    public void Seeds_written_by_the_targets_are_committed()
    {
        // The committed seeds come from `SharpVhost.Fuzz seeds`; a changed input format must regenerate them.
        foreach (var target in FuzzTargets.All)
            foreach (var (seedName, data) in target.Seeds())
            {
                string path = Path.Combine(RepoRoot, "fuzz", "corpus", target.Name, seedName);
                Assert.True(File.Exists(path), $"seed {target.Name}/{seedName} is not committed (run fuzz/run.sh seeds)");
                Assert.True(data.AsSpan().SequenceEqual(File.ReadAllBytes(path)), $"seed {target.Name}/{seedName} differs from what the target writes");
            }
    }

    private static List<string> InputsOf(string target) =>
        [.. new[] { "corpus", "regressions" }
            .SelectMany(kind => FuzzTargets.InputFiles(Path.Combine(RepoRoot, "fuzz", kind, target)))];

    private static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "SharpVhost.slnx"))) return dir.FullName;
        throw new InvalidOperationException("repository root (SharpVhost.slnx) not found above " + AppContext.BaseDirectory);
    });

    private static string RepoRoot => Root.Value;
}
