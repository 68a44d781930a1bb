using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>Base for kernel paths that fire MMU notifiers around a pte change.</summary>
public abstract class Invalidator(Kernel kernel, string name) : Actor(kernel, name)
{
    /// <summary>One step of invalidate_range_start; moves to <paramref name="next"/> when the callbacks are done.</summary>
    protected bool StartStep(Exec x, int next, bool blockable = true)
    {
        var r = K.InvalidateStart(x, Me, blockable);
        if (r == SubResult.Blocked) return false;
        if (r == SubResult.Done) x.Set(Me.Pc, next);
        return true;
    }

    protected bool EndStep(Exec x, int next)
    {
        K.InvalidateEnd(x);
        x.Set(Me.Pc, next);
        return true;
    }
}
