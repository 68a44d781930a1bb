using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// Page reclaim (shrink_page_list) of the ring page: isolate, trylock, try_to_unmap (notifiers),
/// pageout, try_to_free_buffers, then __remove_mapping which frees the page only when page_ref_freeze
/// finds exactly the cache and isolation references. hugetlbfs pages are not on the LRU.
/// </summary>
public sealed class Reclaim(Kernel k, string name) : Invalidator(k, name)
{
    public override void Init(ref StateVector s)
    {
        if (K.Kind == PageKind.Hugetlbfs) s[Me.Pc] = Done;
    }

    private bool Keep(Exec x, int p, string why)
    {
        K.UnlockPage(x, p);
        K.PutPage(x, p);
        return Go(x, Done, why + ": unlock_page, putback_lru_page");
    }

    public override bool Step(Exec x)
    {
        int p = x.Get(Me.Page);
        switch (Pc(x))
        {
            case 0:
            {
                int c = K.CurrentPage(x);
                if (c < 0 || x.Get(K.Ref[c]) == 0) return Go(x, Done, "nothing to isolate");
                K.GetPage(x, c);
                x.Set(Me.Page, c);
                return Go(x, 1, "isolate_lru_page");
            }
            case 1:
                if (!K.TryLockPage(x, p))
                {
                    K.PutPage(x, p);
                    return Go(x, Done, "trylock_page failed, putback_lru_page");
                }
                return Go(x, 2, "trylock_page");
            case 2:
                if (K.PageHas(x, p, PageFlags.Writeback)) return Keep(x, p, "page under writeback");
                if (K.Kind == PageKind.Anon && !K.PageHas(x, p, PageFlags.InCache))
                {
                    x.SetFlag(K.Flags[p], PageFlags.InCache);
                    K.GetPage(x, p);
                    return Go(x, K.MappedPage(x) == p ? 3 : 6, "add_to_swap");
                }
                if (K.MappedPage(x) == p)
                {
                    x.Set(Me.Pc, 3);
                    return StartStep(x, 4);
                }
                return Go(x, 6, "page not mapped");
            case 3:
                return StartStep(x, 4);
            case 4:
            {
                if (K.Has(Fixes.AnonExclusivePin) && K.Kind == PageKind.Anon && K.MaybeDmaPinned(x, p))
                {
                    x.Set(Me.Aux2, 1);
                    return Go(x, 5, "try_to_unmap_one: pinned anon-exclusive page, abort");
                }
                if (K.MappedPage(x) == p)
                {
                    int pf = x.Get(K.PteFlagsField);
                    if ((pf & (int)PteFlags.Dirty) != 0) K.SetPageDirty(x, p);
                    if (K.Kind == PageKind.Anon) x.Set(K.PteFlagsField, (int)PteFlags.SwapEntry);
                    else { x.Set(K.PtePage, 0); x.Set(K.PteFlagsField, 0); }
                    x.SetFlag(K.Flags[p], PageFlags.WriteProtected);
                    K.PutPage(x, p);
                }
                return Go(x, 5, "try_to_unmap_one: clear pte, transfer dirty bit");
            }
            case 5:
                EndStep(x, x.Get(Me.Aux2) != 0 ? 9 : 6);
                return true;
            case 6:
                if (!K.PageHas(x, p, PageFlags.Dirty))
                    return Go(x, 7, "page clean, no pageout");
                x.ClearFlag(K.Flags[p], PageFlags.Dirty);
                K.WritePage(x, p, Name);
                return Go(x, 7, "pageout: clear_page_dirty_for_io, writepage");
            case 7:
                if (K.Kind != PageKind.Ext4 || !K.PageHas(x, p, PageFlags.Buffers))
                    return Go(x, 8, "no buffers to release");
                if (K.PageHas(x, p, PageFlags.Dirty)) return Keep(x, p, "try_to_free_buffers: page dirty again, keep");
                if (K.Has(Fixes.RefusePinnedFreeBuffers) && K.MaybeDmaPinned(x, p))
                    return Keep(x, p, "try_to_free_buffers refuses: page_maybe_dma_pinned");
                x.ClearFlag(K.Flags[p], PageFlags.Buffers);
                return Go(x, 8, "try_to_release_page: try_to_free_buffers");
            case 8:
            {
                int r = x.Get(K.Ref[p]);
                if (r != 2 || K.PageHas(x, p, PageFlags.Dirty))
                    return Keep(x, p, r != 2 ? "__remove_mapping: page_ref_freeze(2) fails (extra reference)" : "__remove_mapping: page dirty after freeze");
                x.Set(K.Ref[p], 0);
                x.Set(K.Flags[p], (int)(PageFlags.Allocated | PageFlags.Freed));
                return Go(x, Done, "__remove_mapping: page_ref_freeze(2), delete from cache, free page");
            }
            case 9:
                return Keep(x, p, "unmap aborted");
            default:
                return false;
        }
    }
}
