using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Strategies;

/// <summary>
/// The series' V1 (and, with <c>modern</c>, pin_user_pages(FOLL_LONGTERM) as kernels since 6.5 treat it):
/// pin the page for good, vmap it, write through the vmap every round, set_page_dirty_lock and unpin at the end.
/// Modern GUP refuses a long-term writable pin of a file mapping that needs writeback; the worker then
/// falls back to copy_to_user.
/// </summary>
public sealed class GupLongterm(Kernel k, string name, int rounds, bool modern) : Worker(k, name, rounds)
{
    private readonly string Gup = modern ? "pin_user_pages_fast(FOLL_WRITE|FOLL_LONGTERM)" : "get_user_pages_fast(FOLL_WRITE|FOLL_LONGTERM)";

    public override bool Step(Exec x)
    {
        int lmap = x.Get(Me.Aux2);
        switch (Pc(x))
        {
            case 0:
            {
                if (modern && K.Has(Fixes.LongtermFileRefused) && K.Kind.HasWriteback())
                    return Go(x, 10, Gup + " refused on a file mapping: fall back to copy_to_user");
                int p = K.GupFastWritable(x);
                if (p >= 0 && x.Get(Me.Sub) == 0)
                {
                    K.PinPage(x, p);
                    x.Set(Me.Page, p);
                    return Go(x, 1, Gup);
                }
                var r = WriteFault.Step(K, x, Me, "GUP slow path: ");
                if (r == SubResult.Blocked) return false;
                if (r == SubResult.Failed) x.Set(Me.Pc, Done);
                return true;
            }
            case 1:
            {
                int p = x.Get(Me.Page);
                x.Set(K.Vmap, p + 1);
                x.Set(Me.Aux2, p + 1);
                return Go(x, 2, "vmap(pinned page)");
            }
            case 2:
                if (RoundsDone(x)) return Go(x, 3, "stop: set_page_dirty_lock: lock_page") && LockOrBlock(x);
                K.VmapWrite(x, lmap, Name);
                NextRound(x);
                return Go(x, 2, "read avail/desc, write used ring through vmap");
            case 3:
            {
                int p = x.Get(Me.Page);
                K.SetPageDirty(x, p);
                K.UnlockPage(x, p);
                return Go(x, 4, "set_page_dirty, unlock_page");
            }
            case 4:
            {
                int p = x.Get(Me.Page);
                x.Set(K.Vmap, 0);
                K.UnpinPage(x, p);
                return Go(x, Done, (modern ? "vunmap, unpin_user_page" : "vunmap, put_page"));
            }
            case 10:
                if (RoundsDone(x)) return Go(x, Done, "stop");
                return CopyRound(x, 10);
            default:
                return false;
        }
    }

    public override bool InDirtyWindow(in StateVector s) => s[Me.Pc] is >= 1 and <= 3;

    public override bool HasDirtyWindow => true;

    private bool LockOrBlock(Exec x) => K.TryLockPage(x, x.Get(Me.Page));
}
