namespace SharpVhost.MmCheck.Model;

/// <summary>The per-actor fields every actor gets: program counter, sub-program counter, and scratch.</summary>
public sealed class ActorSlots
{
    public readonly int Pc, Sub, Page, Aux, Aux2, Cb;

    public ActorSlots(Layout layout, string name)
    {
        Pc = layout.Add(name + ".pc");
        Sub = layout.Add(name + ".sub");
        Page = layout.Add(name + ".page");
        Aux = layout.Add(name + ".aux");
        Aux2 = layout.Add(name + ".aux2");
        Cb = layout.Add(name + ".cb");
    }
}

/// <summary>
/// One thread of control (a CPU running a kernel path). Each call to <see cref="Step"/> performs one
/// named kernel step atomically, or returns false when the actor is blocked or finished.
/// </summary>
public abstract class Actor
{
    public const int Done = 255;

    protected Actor(Kernel kernel, string name)
    {
        K = kernel;
        Name = name;
        Me = new ActorSlots(kernel.Layout, name);
    }

    public Kernel K { get; }
    public string Name { get; }
    public ActorSlots Me { get; }

    /// <summary>Sets the actor's fields in the initial state.</summary>
    public virtual void Init(ref StateVector s) { }

    public abstract bool Step(Exec x);

    public bool IsDone(in StateVector s) => s[Me.Pc] == Done;

    /// <summary>
    /// True while this actor holds a pin it has written (or will write) through and has not yet called
    /// set_page_dirty: the window the review argued about. Actors without such a window say false.
    /// </summary>
    public virtual bool InDirtyWindow(in StateVector s) => false;

    /// <summary>Whether this actor has a dirty window at all (overrides <see cref="InDirtyWindow"/>); said
    /// outright rather than found by reflection, so the NativeAOT build needs no method metadata.</summary>
    public virtual bool HasDirtyWindow => false;

    protected int Pc(Exec x) => x.Get(Me.Pc);

    /// <summary>Moves to program counter <paramref name="pc"/> after doing a step named <paramref name="label"/>.</summary>
    protected bool Go(Exec x, int pc, string label)
    {
        x.Set(Me.Pc, pc);
        x.Label = label;
        return true;
    }
}
