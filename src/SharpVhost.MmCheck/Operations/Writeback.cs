using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// Background writeback (write_cache_pages) of the ring page, <c>passes</c> times: lock, clear_page_dirty_for_io
/// (page_mkclean fires the notifiers and write-protects the pte), writepage, end writeback.
/// Only a block filesystem has writeback; for anon, tmpfs and hugetlbfs the actor has nothing to do.
/// </summary>
public sealed class Writeback : Invalidator
{
    private readonly int _passes;

    public Writeback(Kernel k, string name, int passes) : base(k, name) => _passes = passes;

    public override void Init(ref StateVector s)
    {
        s[Me.Aux] = (byte)_passes;
        if (!K.Kind.HasWriteback()) s[Me.Pc] = Done;
    }

    private bool PassDone(Exec x, string label)
    {
        int left = x.Get(Me.Aux) - 1;
        x.Set(Me.Aux, left);
        return Go(x, left == 0 ? Done : 0, label);
    }

    public override bool Step(Exec x)
    {
        int p = x.Get(Me.Page);
        switch (Pc(x))
        {
            case 0:
            {
                int c = K.CachedPage(x);
                if (c < 0 || !K.PageHas(x, c, PageFlags.Dirty)) return PassDone(x, "no dirty page, pass ends");
                if (x.Get(K.Ref[c]) == 0) return false;
                K.GetPage(x, c);
                x.Set(Me.Page, c);
                return Go(x, 1, "find dirty page, get_page");
            }
            case 1:
                if (!K.TryLockPage(x, p)) return false;
                return Go(x, 2, "lock_page");
            case 2:
                if (!K.PageHas(x, p, PageFlags.Dirty) || !K.PageHas(x, p, PageFlags.InCache))
                {
                    K.UnlockPage(x, p);
                    K.PutPage(x, p);
                    return PassDone(x, "page no longer dirty: unlock_page, put_page");
                }
                x.Set(Me.Aux2, 0);
                return Go(x, K.MappedPage(x) == p ? 3 : 5, "clear_page_dirty_for_io: page_mkclean");
            case 3:
                return StartStep(x, 4);
            case 4:
                if (K.MappedPage(x) == p)
                {
                    int pf = x.Get(K.PteFlagsField);
                    if ((pf & (int)PteFlags.Dirty) != 0) x.Set(Me.Aux2, 1);
                    x.Set(K.PteFlagsField, pf & ~(int)(PteFlags.Writable | PteFlags.Dirty));
                }
                x.SetFlag(K.Flags[p], PageFlags.WriteProtected);
                return Go(x, 6, "page_mkclean_one: write-protect and clean pte");
            case 6:
                return EndStep(x, 5);
            case 5:
                if (x.Get(Me.Aux2) != 0) K.SetPageDirty(x, p);
                x.ClearFlag(K.Flags[p], PageFlags.Dirty);
                x.SetFlag(K.Flags[p], PageFlags.Writeback);
                return Go(x, 7, "TestClearPageDirty, set_page_writeback");
            case 7:
                K.WritePage(x, p, Name);
                K.UnlockPage(x, p);
                return Go(x, 8, "writepage (submit I/O), unlock_page");
            case 8:
                x.ClearFlag(K.Flags[p], PageFlags.Writeback);
                K.PutPage(x, p);
                return PassDone(x, "end_page_writeback, put_page");
            default:
                return false;
        }
    }
}
