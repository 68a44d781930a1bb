using System.Diagnostics;
using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Explorer;

/// <summary>
/// Random walks from the initial state, for configurations too large to search exhaustively: each thread
/// runs walks of at most MaxSteps steps with its own seed until one breaks a rule or the budget is spent.
/// States counts the steps taken (walks do not hash states).
/// </summary>
public sealed class RandomWalk(Func<Machine> factory, ExploreOptions options, long walks, int seed)
{
    public ExplorationResult Run()
    {
        var sw = Stopwatch.StartNew();
        long steps = 0, started = 0;
        ExplorationResult? found = null;
        var gate = new object();
        int threads = Math.Max(1, options.Threads);
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, id =>
        {
            var m = factory();
            var rng = new Random(seed * 7919 + id);
            var list = new List<Successor>();
            var path = new List<Successor>();
            long local = 0;
            while (Volatile.Read(ref found) is null && Interlocked.Increment(ref started) <= walks && !options.Cancel.IsCancellationRequested)
            {
                var s = m.Initial;
                path.Clear();
                for (int d = 0; d < options.MaxSteps; d++)
                {
                    m.Successors(s, list);
                    if (list.Count == 0)
                    {
                        if (m.CheckTerminal(s) is { } v) Found(m, path, v.Rule, v.Detail);
                        break;
                    }
                    var t = list[rng.Next(list.Count)];
                    path.Add(t);
                    local++;
                    if (t.Violation is Rule r) { Found(m, path, r, t.Detail ?? ""); break; }
                    s = t.State;
                }
            }
            Interlocked.Add(ref steps, local);
        });

        void Found(Machine m, List<Successor> path, Rule rule, string detail)
        {
            lock (gate)
            {
                found ??= new ExplorationResult
                {
                    Verdict = Verdict.Violation,
                    Rule = rule,
                    Detail = detail,
                    Trace = path.Select(t => new TraceStep(t.Actor, m.Actors[t.Actor].Name, t.Label)).ToList(),
                };
            }
        }

        var r = found ?? new ExplorationResult { Verdict = Verdict.Safe, BoundHit = true };
        return r with { States = steps, Transitions = steps, Elapsed = sw.Elapsed, Mode = $"random walk ({walks} walks, seed {seed})" };
    }
}
