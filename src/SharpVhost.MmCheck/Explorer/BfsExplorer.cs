using System.Diagnostics;
using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Explorer;

/// <summary>
/// Breadth-first search over all interleavings (no reduction), keeping a parent link per state, so the
/// first violation it meets has the fewest steps of all: the counterexample the tool prints.
/// It gives up (verdict safe, bound reached) after <paramref name="maxStates"/> states, so a huge model
/// found violating by random walks keeps the walk's own trace instead of exhausting memory.
/// </summary>
public sealed class BfsExplorer(Machine machine, ExploreOptions options, int maxStates = 20_000_000)
{
    public ExplorationResult Run()
    {
        var sw = Stopwatch.StartNew();
        var index = new Dictionary<StateVector, int>();
        var states = new List<StateVector>();
        var parent = new List<int>();
        var via = new List<Successor>();
        var depth = new List<int>();
        var list = new List<Successor>();
        long transitions = 0;
        bool boundHit = false;
        int maxDepth = 0;

        void Add(in StateVector s, int from, in Successor t, int d)
        {
            index[s] = states.Count;
            states.Add(s);
            parent.Add(from);
            via.Add(t);
            depth.Add(d);
        }

        List<TraceStep> TraceTo(int i)
        {
            var steps = new List<TraceStep>();
            for (; parent[i] >= 0; i = parent[i])
                steps.Add(new TraceStep(via[i].Actor, machine.Actors[via[i].Actor].Name, via[i].Label));
            steps.Reverse();
            return steps;
        }

        ExplorationResult Done(Verdict v, Rule? rule = null, string? detail = null, List<TraceStep>? trace = null) => new()
        {
            Verdict = v,
            Rule = rule,
            Detail = detail,
            Trace = trace ?? [],
            States = states.Count,
            Transitions = transitions,
            Elapsed = sw.Elapsed,
            BoundHit = boundHit,
            MaxDepth = maxDepth,
            Mode = "bfs",
        };

        Add(machine.Initial, -1, default, 0);
        for (int head = 0; head < states.Count; head++)
        {
            if (options.Cancel.IsCancellationRequested || states.Count > maxStates) { boundHit = true; break; }
            var s = states[head];
            int d = depth[head];
            maxDepth = Math.Max(maxDepth, d);
            machine.Successors(s, list);
            if (list.Count == 0)
            {
                if (machine.CheckTerminal(s) is { } v) return Done(Verdict.Violation, v.Rule, v.Detail, TraceTo(head));
                continue;
            }
            if (d >= options.MaxSteps) { boundHit = true; continue; }
            foreach (var t in list)
            {
                transitions++;
                if (t.Violation is Rule rule)
                {
                    var trace = TraceTo(head);
                    trace.Add(new TraceStep(t.Actor, machine.Actors[t.Actor].Name, t.Label));
                    return Done(Verdict.Violation, rule, t.Detail, trace);
                }
                if (!index.ContainsKey(t.State)) Add(t.State, head, t, d + 1);
            }
        }
        return Done(Verdict.Safe);
    }
}
