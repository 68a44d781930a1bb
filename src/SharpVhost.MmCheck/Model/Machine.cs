namespace SharpVhost.MmCheck.Model;

/// <summary>One enabled step from a state: the state it leads to and what it read and wrote.</summary>
public struct Successor
{
    public StateVector State;
    public int Actor;
    public ulong Reads, Writes;
    public string Label;
    public Rule? Violation;
    public string? Detail;

    /// <summary>Two steps commute when neither writes what the other reads or writes.</summary>
    public readonly bool IndependentOf(in Successor o) =>
        ((Writes & (o.Reads | o.Writes)) | (o.Writes & Reads)) == 0;
}

/// <summary>A closed model: the kernel objects plus the actors that run concurrently on them.</summary>
public sealed class Machine
{
    private readonly Exec _exec;

    public Machine(Kernel kernel, IReadOnlyList<Actor> actors, IReadOnlySet<Rule> checkedRules)
    {
        Kernel = kernel;
        Actors = actors;
        Checked = checkedRules;
        _exec = new Exec(checkedRules);
        if (actors.Count > 16) throw new ArgumentException("at most 16 actors");
        var s = default(StateVector);
        kernel.Init(ref s);
        foreach (var a in actors) a.Init(ref s);
        Initial = s;
    }

    public Kernel Kernel { get; }
    public IReadOnlyList<Actor> Actors { get; }
    public IReadOnlySet<Rule> Checked { get; }
    public StateVector Initial { get; }

    /// <summary>A machine is not thread-safe (it reuses one step context); each explorer thread clones one.</summary>
    public Func<Machine>? Factory { get; init; }

    public Machine Clone() => Factory?.Invoke() ?? throw new InvalidOperationException("machine has no factory");

    /// <summary>Fills <paramref name="into"/> with every enabled step from <paramref name="s"/>, in actor order.</summary>
    public void Successors(in StateVector s, List<Successor> into)
    {
        into.Clear();
        var x = _exec;
        for (int i = 0; i < Actors.Count; i++)
        {
            if (s[Actors[i].Me.Pc] == Actor.Done) continue;
            x.Reset(s);
            if (!Actors[i].Step(x)) continue;
            into.Add(new Successor
            {
                State = x.S,
                Actor = i,
                Reads = x.Reads,
                Writes = x.Writes,
                Label = x.Label,
                Violation = x.Violation,
                Detail = x.Detail,
            });
        }
    }

    public bool AllDone(in StateVector s)
    {
        foreach (var a in Actors)
            if (!a.IsDone(s)) return false;
        return true;
    }

    /// <summary>Checks a state with no enabled step: a deadlock, or a finished run that left the counter off zero.</summary>
    public (Rule Rule, string Detail)? CheckTerminal(in StateVector s)
    {
        if (!AllDone(s))
        {
            if (!Checked.Contains(Rule.Deadlock)) return null;
            var stuck = new List<string>();
            var x = new Exec(Checked);
            foreach (var a in Actors)
            {
                if (a.IsDone(s)) continue;
                x.Reset(s);
                a.Step(x);
                stuck.Add(x.Label.Length > 0 ? $"{a.Name} {x.Label}" : $"{a.Name} is blocked");
            }
            return (Rule.Deadlock, "no actor can move: " + string.Join("; ", stuck));
        }
        int count = (sbyte)s[Kernel.InvCount];
        if (count != 0 && Checked.Contains(Rule.InvalidateCounter))
            return (Rule.InvalidateCounter, $"every actor finished but invalidate_count is {count}: the fast path stays disabled for good");
        return null;
    }

    public string Describe(in StateVector s)
    {
        var parts = new List<string>();
        for (int f = 0; f < Kernel.Layout.Count; f++)
            if (s[f] != 0) parts.Add($"{Kernel.Layout.NameOf(f)}={s[f]}");
        return string.Join(" ", parts);
    }
}
