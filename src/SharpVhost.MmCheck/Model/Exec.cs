namespace SharpVhost.MmCheck.Model;

/// <summary>
/// The context one step runs in: a private copy of the state plus a record of which fields the step
/// read and wrote. The explorer derives independence of steps (for partial-order reduction) from these
/// footprints, so steps never declare them by hand and cannot get them wrong.
/// </summary>
public sealed class Exec
{
    public StateVector S;
    public ulong Reads;
    public ulong Writes;
    public string Label = "";
    public Rule? Violation;
    public string? Detail;
    public readonly IReadOnlySet<Rule> Checked;

    public Exec(IReadOnlySet<Rule> checkedRules) => Checked = checkedRules;

    public void Reset(in StateVector s)
    {
        S = s;
        Reads = 0;
        Writes = 0;
        Label = "";
        Violation = null;
        Detail = null;
    }

    public int Get(int f)
    {
        Reads |= 1UL << f;
        return S[f];
    }

    public int GetSigned(int f)
    {
        Reads |= 1UL << f;
        return (sbyte)S[f];
    }

    public void Set(int f, int v)
    {
        Writes |= 1UL << f;
        S[f] = (byte)v;
    }

    public bool Has(int f, PageFlags flag) => (Get(f) & (int)flag) != 0;

    public void SetFlag(int f, PageFlags flag) => Set(f, Get(f) | (int)flag);

    public void ClearFlag(int f, PageFlags flag) => Set(f, Get(f) & ~(int)flag);

    /// <summary>A blocked step: says what it waits for (shown when a deadlock is reported) and returns false.</summary>
    public bool Wait(string what)
    {
        Label = what;
        return false;
    }

    /// <summary>Reports a broken rule; ignored when the scenario does not check that rule.</summary>
    public void Violate(Rule rule, string detail)
    {
        if (Violation is null && Checked.Contains(rule))
        {
            Violation = rule;
            Detail = detail;
        }
    }
}
