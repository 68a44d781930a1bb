using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Strategies;

/// <summary>
/// The vhost worker: <c>rounds</c> times it reads the avail ring and descriptors and writes the used ring
/// through its strategy's mapping (one access step: the ring page is one page, so the read and the write
/// see the same mapping and the same detectors).
/// Fields: Aux counts rounds, Aux2 holds the worker's local map pointer (page+1), Cb a sampled sequence.
/// </summary>
public abstract class Worker(Kernel k, string name, int rounds) : Actor(k, name)
{
    protected readonly int Rounds = rounds;

    protected bool RoundsDone(Exec x) => x.Get(Me.Aux) >= Rounds;

    protected void NextRound(Exec x) => x.Set(Me.Aux, x.Get(Me.Aux) + 1);

    /// <summary>copy_to_user of the used ring, faulting the page in writable first when needed.</summary>
    protected SubResult CopyToUser(Exec x)
    {
        if (x.Get(Me.Sub) == 0 && K.UserWriteOk(x))
        {
            K.UserWrite(x);
            x.Label = "copy_from_user(avail/desc), copy_to_user(used ring)";
            return SubResult.Done;
        }
        var r = WriteFault.Step(K, x, Me, "");
        // A finished fault still needs the copy itself: report Running so the caller retries it.
        if (r == SubResult.Done) return SubResult.Running;
        if (r == SubResult.Failed) x.Label += " (copy_to_user fails)";
        return r;
    }

    /// <summary>A whole round through copy_to_user; moves to <paramref name="next"/> when the write (or -EFAULT) happened.</summary>
    protected bool CopyRound(Exec x, int next)
    {
        var r = CopyToUser(x);
        if (r == SubResult.Blocked) return false;
        if (r is SubResult.Done or SubResult.Failed)
        {
            NextRound(x);
            x.Set(Me.Pc, next);
        }
        return true;
    }
}
