using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// The OOM reaper tearing down a dying process's private memory: its invalidate_range_start is
/// non-blocking, so a callback that sleeps breaks the rule. Shared and hugetlb mappings are skipped.
/// </summary>
public sealed class OomReaper(Kernel k, string name) : Invalidator(k, name)
{
    public override void Init(ref StateVector s)
    {
        if (K.Kind != PageKind.Anon) s[Me.Pc] = Done;
    }

    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
                return StartStep(x, 1, blockable: false);
            case 1:
            {
                int p = K.MappedPage(x);
                if (p >= 0) K.PutPage(x, p);
                x.Set(K.PtePage, 0);
                x.Set(K.PteFlagsField, 0);
                x.Set(K.VmaLive, 0);
                return Go(x, 2, "__oom_reap_task_mm: zap anon pte");
            }
            case 2:
                return EndStep(x, Done);
            default:
                return false;
        }
    }
}
