using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Explorer;

/// <summary>The fewest steps other actors must take inside one actor's pin-to-dirty window to break a rule.</summary>
public sealed record WindowResult(string Actor, int ForeignSteps, int OwnWindowSteps, IReadOnlyList<TraceStep> Trace);

/// <summary>
/// Measures how wide a race window must be in practice: a 0-1 breadth-first search where a step costs 1 when
/// another actor takes it while <paramref name="actor"/> is inside its dirty window (pinned, not yet dirtied),
/// and 0 otherwise. The cheapest violating path says how many foreign steps have to fit in the window.
/// </summary>
public static class WindowSearch
{
    public static WindowResult? Measure(Machine m, int actor, int maxStates = 5_000_000)
    {
        var a = m.Actors[actor];
        var dist = new Dictionary<StateVector, int>();
        var parent = new Dictionary<StateVector, (StateVector From, Successor Via)>();
        var deque = new LinkedList<StateVector>();
        var list = new List<Successor>();
        dist[m.Initial] = 0;
        deque.AddFirst(m.Initial);
        int best = int.MaxValue;
        StateVector bestFrom = default;
        Successor bestVia = default;
        bool bestIsTerminal = false;
        while (deque.Count > 0 && dist.Count < maxStates)
        {
            var s = deque.First!.Value;
            deque.RemoveFirst();
            int d = dist[s];
            if (d >= best) break;
            m.Successors(s, list);
            if (list.Count == 0 && m.CheckTerminal(s) is not null && d < best)
            {
                best = d; bestFrom = s; bestIsTerminal = true;
                continue;
            }
            bool inWindow = a.InDirtyWindow(s);
            foreach (var t in list)
            {
                int c = d + (inWindow && t.Actor != actor ? 1 : 0);
                if (t.Violation is not null)
                {
                    if (c < best) { best = c; bestFrom = s; bestVia = t; bestIsTerminal = false; }
                    continue;
                }
                if (dist.TryGetValue(t.State, out int old) && old <= c) continue;
                dist[t.State] = c;
                parent[t.State] = (s, t);
                if (c == d) deque.AddFirst(t.State); else deque.AddLast(t.State);
            }
        }
        if (best == int.MaxValue) return null;
        var steps = new List<TraceStep>();
        if (!bestIsTerminal) steps.Add(new TraceStep(bestVia.Actor, m.Actors[bestVia.Actor].Name, bestVia.Label ?? ""));
        for (var s = bestFrom; parent.TryGetValue(s, out var p); s = p.From)
            steps.Add(new TraceStep(p.Via.Actor, m.Actors[p.Via.Actor].Name, p.Via.Label));
        steps.Reverse();
        // The actor's own steps from entering its window to leaving it, on this path.
        int own = 0, start = -1;
        var st = m.Initial;
        var replay = new List<Successor>();
        for (int i = 0; i < steps.Count; i++)
        {
            if (a.InDirtyWindow(st) && start < 0) start = i;
            if (a.InDirtyWindow(st) && steps[i].Actor == actor) own++;
            m.Successors(st, replay);
            var next = replay.First(x => x.Actor == steps[i].Actor);
            st = next.State;
        }
        return new WindowResult(a.Name, best, own, steps);
    }

    /// <summary>The share of random walks that break a rule: how often an unguided scheduler hits the race.</summary>
    public static double HitRate(Func<Machine> factory, int walks, int maxSteps, int seed)
    {
        var m = factory();
        var rng = new Random(seed);
        var list = new List<Successor>();
        int hits = 0;
        for (int w = 0; w < walks; w++)
        {
            var s = m.Initial;
            for (int d = 0; d < maxSteps; d++)
            {
                m.Successors(s, list);
                if (list.Count == 0) { if (m.CheckTerminal(s) is not null) hits++; break; }
                var t = list[rng.Next(list.Count)];
                if (t.Violation is not null) { hits++; break; }
                s = t.State;
            }
        }
        return (double)hits / walks;
    }
}
