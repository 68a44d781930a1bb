using SharpVhost.MmCheck.Model;
using SharpVhost.MmCheck.Scenarios;

namespace SharpVhost.MmCheck.Tests;

/// <summary>Drives a machine by hand: one named actor's step at a time, as a test spells the interleaving.</summary>
public sealed class Driver
{
    private readonly List<Successor> _succ = [];

    public Driver(Machine m)
    {
        M = m;
        S = m.Initial;
    }

    public Driver(Scenario s) : this(s.Build()) { }

    public Machine M { get; }
    public Kernel K => M.Kernel;
    public StateVector S;
    public List<string> Labels { get; } = [];
    public Rule? Violation { get; private set; }

    public int Index(string actor)
    {
        for (int i = 0; i < M.Actors.Count; i++) if (M.Actors[i].Name == actor) return i;
        throw new ArgumentException("no actor " + actor);
    }

    public bool CanStep(string actor)
    {
        M.Successors(S, _succ);
        int i = Index(actor);
        return _succ.Any(t => t.Actor == i);
    }

    /// <summary>Takes one step of <paramref name="actor"/>; fails the test when that actor cannot move.</summary>
    public Driver Step(string actor)
    {
        Assert.Null(Violation);
        M.Successors(S, _succ);
        int i = Index(actor);
        var t = _succ.Where(x => x.Actor == i).ToList();
        Assert.True(t.Count == 1, $"{actor} cannot move after: {string.Join(" / ", Labels)}");
        S = t[0].State;
        Labels.Add(actor + ": " + t[0].Label);
        Violation = t[0].Violation;
        return this;
    }

    public Driver Steps(params string[] actors)
    {
        foreach (var a in actors)
        {
            if (Violation is not null) break;
            Step(a);
        }
        return this;
    }

    /// <summary>Runs <paramref name="actor"/> alone until it finishes (or a rule breaks).</summary>
    public Driver RunAlone(string actor, int limit = 200)
    {
        for (int n = 0; n < limit && !M.Actors[Index(actor)].IsDone(S) && Violation is null; n++) Step(actor);
        Assert.True(M.Actors[Index(actor)].IsDone(S) || Violation is not null, actor + " did not finish");
        return this;
    }

    public int Ref(int page) => S[K.Ref[page]];
    public int Pin(int page) => S[K.Pin[page]];
    public PageFlags Flags(int page) => (PageFlags)S[K.Flags[page]];
    public bool Has(int page, PageFlags f) => (Flags(page) & f) != 0;
    public int PtePage => S[K.PtePage];
    public PteFlags Pte => (PteFlags)S[K.PteFlagsField];
    public int Get(int field) => S[field];
    public int InvCount => (sbyte)S[K.InvCount];
}
