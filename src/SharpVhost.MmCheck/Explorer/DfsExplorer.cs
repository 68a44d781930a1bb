using System.Diagnostics;
using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Explorer;

/// <summary>
/// Exhaustive depth-first search with state hashing and sleep-set partial-order reduction: after exploring
/// step t from a state, t is put to sleep in the sibling subtrees whose steps are independent of it
/// (footprints recorded by <see cref="Exec"/>), since those interleavings reach the same states.
/// Threads search the same graph in different actor orders and share the visited table, so they split the
/// work without coordination. With a preemption bound, reduction is off and the state key carries the
/// last actor and the preemptions spent.
/// </summary>
public sealed class DfsExplorer
{
    private readonly Func<Machine> _factory;
    private readonly ExploreOptions _o;
    private readonly VisitedTable _visited = new();
    private volatile bool _stop;
    private long _transitions;
    private int _maxDepth;
    private volatile bool _boundHit;
    private ExplorationResult? _found;
    private readonly object _foundLock = new();

    public DfsExplorer(Func<Machine> factory, ExploreOptions options)
    {
        _factory = factory;
        _o = options;
    }

    public ExplorationResult Run()
    {
        var sw = Stopwatch.StartNew();
        int threads = Math.Max(1, _o.Threads);
        using var progress = _o.OnProgress is null ? null : new Timer(_ =>
            _o.OnProgress(new Progress(_visited.Count, Volatile.Read(ref _maxDepth), _visited.Count / Math.Max(1e-3, sw.Elapsed.TotalSeconds))),
            null, 2000, 2000);
        var workers = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            int id = i;
            workers[i] = new Thread(() => new Search(this, _factory(), id).Run(), 16 * 1024 * 1024) { IsBackground = true };
            workers[i].Start();
        }
        foreach (var w in workers) w.Join();
        sw.Stop();
        var r = _found ?? new ExplorationResult { Verdict = Verdict.Safe };
        return r with
        {
            States = _visited.Count,
            Transitions = Interlocked.Read(ref _transitions),
            Elapsed = sw.Elapsed,
            BoundHit = _boundHit,
            MaxDepth = _maxDepth,
            Mode = _o.MaxPreemptions is int p ? $"dfs, preemption bound {p}" : _o.PartialOrderReduction ? "dfs + sleep sets" : "dfs",
        };
    }

    private void Report(Machine m, List<Successor> path, Rule rule, string detail)
    {
        lock (_foundLock)
        {
            if (_found is not null) return;
            _found = new ExplorationResult
            {
                Verdict = Verdict.Violation,
                Rule = rule,
                Detail = detail,
                Trace = path.Select(t => new TraceStep(t.Actor, m.Actors[t.Actor].Name, t.Label)).ToList(),
            };
            _stop = true;
        }
    }

    /// <summary>
    /// One thread's search. It tries actors from the last to the first (the worker last), rotated by a
    /// thread-specific offset: measured on the core model, worker-last halves the transitions sleep sets leave.
    /// </summary>
    private sealed class Search(DfsExplorer owner, Machine machine, int id)
    {
        private readonly List<List<Successor>> _levels = [];
        private readonly List<Successor> _path = [];
        private long _localTransitions;

        public void Run()
        {
            var s = machine.Initial;
            bool bounded = owner._o.MaxPreemptions is not null;
            if (bounded) s[Layout.LastActorField] = 255;
            if (owner._visited.Visit(s, 0, 0, out uint only))
                Dfs(s, 0, only, 0);
            Interlocked.Add(ref owner._transitions, _localTransitions);
        }

        private void Dfs(in StateVector s, uint sleep, uint only, int depth)
        {
            if (owner._stop || owner._o.Cancel.IsCancellationRequested) { owner._stop = true; return; }
            if (depth > owner._maxDepth) InterlockedMax(ref owner._maxDepth, depth);
            while (_levels.Count <= depth) _levels.Add([]);
            var list = _levels[depth];
            machine.Successors(s, list);
            if (list.Count == 0)
            {
                if (machine.CheckTerminal(s) is { } v) owner.Report(machine, _path, v.Rule, v.Detail);
                return;
            }
            if (depth >= owner._o.MaxSteps) { owner._boundHit = true; return; }
            bool por = owner._o.PartialOrderReduction && owner._o.MaxPreemptions is null;
            int? preemptBound = owner._o.MaxPreemptions;
            int last = s[Layout.LastActorField];
            bool lastEnabled = false;
            if (preemptBound is not null)
                foreach (var t in list) if (t.Actor == last) lastEnabled = true;
            uint done = 0;
            int n = list.Count;
            int offset = id % n;
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list);
            for (int k = 0; k < n; k++)
            {
                ref readonly var t = ref span[(n - 1 - k + offset) % n];
                uint bit = 1u << t.Actor;
                if ((sleep & bit) != 0 || (only & bit) == 0) continue;
                _localTransitions++;
                if (t.Violation is Rule rule)
                {
                    _path.Add(t);
                    owner.Report(machine, _path, rule, t.Detail ?? "");
                    _path.RemoveAt(_path.Count - 1);
                    return;
                }
                var next = t.State;
                uint childSleep = 0;
                if (por)
                {
                    uint asleep = sleep | done;
                    foreach (ref readonly var u in span)
                        if ((asleep & (1u << u.Actor)) != 0 && u.IndependentOf(t)) childSleep |= 1u << u.Actor;
                }
                else if (preemptBound is int pb)
                {
                    int used = s[Layout.PreemptionsField];
                    if (lastEnabled && t.Actor != last) used++;
                    if (used > pb) { owner._boundHit = true; continue; }
                    next[Layout.PreemptionsField] = (byte)used;
                    next[Layout.LastActorField] = (byte)t.Actor;
                }
                if (owner._visited.Visit(next, childSleep, depth + 1, out uint childOnly))
                {
                    _path.Add(t);
                    Dfs(next, childSleep, childOnly, depth + 1);
                    _path.RemoveAt(_path.Count - 1);
                    if (owner._stop) return;
                }
                done |= bit;
            }
        }

        private static void InterlockedMax(ref int target, int value)
        {
            int cur;
            while ((cur = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, cur) != cur) { }
        }
    }
}
