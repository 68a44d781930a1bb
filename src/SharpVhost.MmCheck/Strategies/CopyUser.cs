using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Strategies;

/// <summary>The baseline: every access goes through copy_to_user and the user page table.</summary>
public sealed class CopyUser(Kernel k, string name, int rounds) : Worker(k, name, rounds)
{
    public override bool Step(Exec x)
    {
        if (Pc(x) != 0) return false;
        if (RoundsDone(x)) return Go(x, Done, "stop");
        return CopyRound(x, 0);
    }
}
