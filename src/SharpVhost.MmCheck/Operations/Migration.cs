using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// Page migration (migrate_pages) of the ring page: isolate, lock, replace the pte with a migration entry
/// (notifiers), freeze the refcount at the expected value, move the cache entry, buffers and dirty bit
/// to a new page, then point the pte at the new page. An extra reference (a pin) makes it back out.
/// </summary>
public sealed class Migration(Kernel k, string name) : Invalidator(k, name)
{
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
                if (!K.TryLockPage(x, p)) return false;
                if (K.PageHas(x, p, PageFlags.Writeback))
                {
                    K.UnlockPage(x, p);
                    K.PutPage(x, p);
                    return Go(x, Done, "page under writeback, give up");
                }
                return Go(x, K.MappedPage(x) == p ? 2 : 5, "lock_page");
            case 2:
                return StartStep(x, 3);
            case 3:
            {
                if (K.Has(Fixes.AnonExclusivePin) && K.Kind == PageKind.Anon && K.MaybeDmaPinned(x, p))
                    return Go(x, 4, "try_to_migrate_one: pinned anon-exclusive page, abort");
                if (K.MappedPage(x) != p)
                    return Go(x, 4, "try_to_migrate_one: pte no longer maps the page");
                int pf = x.Get(K.PteFlagsField);
                if ((pf & (int)PteFlags.Dirty) != 0) K.SetPageDirty(x, p);
                x.Set(Me.Aux2, 1 | ((pf & (int)PteFlags.Writable) != 0 ? 2 : 0));
                x.Set(K.PteFlagsField, (int)PteFlags.SwapEntry);
                K.PutPage(x, p);
                return Go(x, 4, "try_to_migrate_one: replace pte with migration entry");
            }
            case 4:
                return EndStep(x, 5);
            case 5:
            {
                int expected = 1 + (K.PageHas(x, p, PageFlags.InCache) ? 1 : 0);
                int q = K.FreeSlot(x);
                if (x.Get(K.Ref[p]) != expected || q < 0)
                    return Go(x, 7, "migrate_page_move_mapping: page_ref_freeze fails (extra reference)");
                int keep = x.Get(K.Flags[p]) & (int)(PageFlags.Dirty | PageFlags.Buffers | PageFlags.InCache);
                x.Set(K.Flags[q], keep | (int)(PageFlags.Allocated | PageFlags.Locked));
                x.Set(K.Ref[q], expected);
                x.Set(K.Flags[p], (x.Get(K.Flags[p]) & ~keep) | (int)PageFlags.WriteProtected);
                x.Set(K.Ref[p], 1);
                x.Set(Me.Aux, q);
                return Go(x, 6, "page_ref_freeze, copy page, move cache entry and buffers to new page");
            }
            case 6:
            {
                int q = x.Get(Me.Aux);
                int saved = x.Get(Me.Aux2);
                if ((saved & 1) != 0 && x.Get(K.VmaLive) != 0)
                {
                    x.Set(K.PtePage, q + 1);
                    x.Set(K.PteFlagsField, (saved & 2) != 0 ? (int)PteFlags.Writable : 0);
                    K.GetPage(x, q);
                }
                K.UnlockPage(x, q);
                K.PutPage(x, q);
                K.UnlockPage(x, p);
                K.PutPage(x, p);
                return Go(x, Done, "remove_migration_ptes (new page), unlock, putback: old page freed");
            }
            case 7:
            {
                int saved = x.Get(Me.Aux2);
                if ((saved & 1) != 0 && x.Get(K.VmaLive) != 0)
                {
                    x.Set(K.PtePage, p + 1);
                    x.Set(K.PteFlagsField, (saved & 2) != 0 ? (int)PteFlags.Writable : 0);
                    K.GetPage(x, p);
                }
                K.UnlockPage(x, p);
                K.PutPage(x, p);
                return Go(x, Done, "remove_migration_ptes (old page), unlock_page, putback");
            }
            default:
                return false;
        }
    }
}
