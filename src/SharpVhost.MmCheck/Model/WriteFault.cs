namespace SharpVhost.MmCheck.Model;

/// <summary>
/// handle_mm_fault for a write, as a sub-path of the actor that faults (copy_to_user or GUP's slow path):
/// look the page up (or read it in), lock it, page_mkwrite for ext4 (attach buffers, set dirty), install a
/// writable pte, unlock. Uses the actor's Sub field as its program counter and Page for the page.
/// </summary>
public static class WriteFault
{
    /// <summary>The step's label, prefixed with the caller's context ("GUP slow path: ") when it has one.</summary>
    private static string L(string who, string text) => who.Length == 0 ? text : who + text;

    public static SubResult Step(Kernel k, Exec x, ActorSlots a, string who)
    {
        int sub = x.Get(a.Sub);
        switch (sub)
        {
            case 0:
            {
                if (x.Get(k.VmaLive) == 0)
                {
                    x.Label = L(who, "handle_mm_fault: no VMA, -EFAULT");
                    return SubResult.Failed;
                }
                int mapped = k.MappedPage(x);
                if (mapped >= 0)
                {
                    if ((x.Get(k.PteFlagsField) & (int)PteFlags.Writable) != 0)
                    {
                        x.Label = L(who, "handle_mm_fault: pte already writable");
                        return SubResult.Done;
                    }
                    if (k.Kind != PageKind.Ext4)
                    {
                        // Anon (exclusive), shmem and hugetlbfs shared pages just get the write bit back.
                        x.Set(k.PteFlagsField, (int)(PteFlags.Writable | PteFlags.Dirty));
                        x.ClearFlag(k.Flags[mapped], PageFlags.WriteProtected);
                        x.Label = L(who, "do_wp_page: make pte writable");
                        return SubResult.Done;
                    }
                    k.GetPage(x, mapped);
                    x.Set(a.Page, mapped);
                    x.Set(a.Sub, 1);
                    x.Label = L(who, "do_wp_page: shared file page, get_page");
                    return SubResult.Running;
                }
                // A swap or migration entry names its page while that page lives; otherwise look in the cache.
                int pte = x.Get(k.PtePage);
                int p = pte != 0 && !k.PageHas(x, pte - 1, PageFlags.Freed) ? pte - 1 : k.CachedPage(x);
                if (p >= 0)
                {
                    if (x.Get(k.Ref[p]) == 0) { x.Wait("waits: page refcount frozen"); return SubResult.Blocked; } // frozen by reclaim/migration: find_get_page retries
                    k.GetPage(x, p);
                    x.Set(a.Page, p);
                    x.Set(a.Sub, 1);
                    x.Label = L(who, k.Kind == PageKind.Anon ? "do_swap_page: found in swap cache, get_page" : "filemap_fault: find_get_page");
                    return SubResult.Running;
                }
                int q = k.FreeSlot(x);
                if (q < 0) return SubResult.Blocked; // out of modelled page frames: bound of the model
                var f = PageFlags.Allocated | PageFlags.InCache;
                if (k.Kind == PageKind.Ext4) f |= PageFlags.Buffers;
                x.Set(k.Flags[q], (int)f);
                x.Set(k.Ref[q], 2);
                x.Set(a.Page, q);
                x.Set(a.Sub, 1);
                x.Label = L(who, k.Kind == PageKind.Anon ? "do_swap_page: read page back from swap" : "filemap_fault: read page into page cache");
                return SubResult.Running;
            }
            case 1:
            {
                int p = x.Get(a.Page);
                if (!k.TryLockPage(x, p)) return SubResult.Blocked;
                x.Set(a.Sub, 2);
                x.Label = L(who, "lock_page");
                return SubResult.Running;
            }
            case 2:
            {
                int p = x.Get(a.Page);
                if (!k.PageHas(x, p, PageFlags.InCache) && k.MappedPage(x) != p)
                {
                    k.UnlockPage(x, p);
                    k.PutPage(x, p);
                    x.Set(a.Sub, 0);
                    x.Label = L(who, "page left the cache meanwhile: unlock_page, put_page, retry");
                    return SubResult.Running;
                }
                x.Set(a.Sub, 3);
                if (k.Kind == PageKind.Ext4)
                {
                    x.SetFlag(k.Flags[p], PageFlags.Buffers);
                    k.SetPageDirty(x, p);
                    x.Label = L(who, "ext4_page_mkwrite: attach buffers, set_page_dirty");
                }
                else x.Label = L(who, "page still cached");
                return SubResult.Running;
            }
            default:
            {
                int p = x.Get(a.Page);
                int mapped = k.MappedPage(x);
                if (mapped == p) k.PutPage(x, p); // the mapping already holds its reference
                else if (mapped < 0)
                    x.Set(k.PtePage, p + 1);    // none or swap entry: our reference becomes the mapping's
                else
                {
                    k.UnlockPage(x, p);
                    k.PutPage(x, p);
                    x.Set(a.Sub, 0);
                    x.Label = L(who, "pte changed under us: unlock_page, put_page, retry");
                    return SubResult.Running;
                }
                x.Set(k.PteFlagsField, (int)(PteFlags.Writable | PteFlags.Dirty));
                x.ClearFlag(k.Flags[p], PageFlags.WriteProtected);
                k.UnlockPage(x, p);
                x.Set(a.Sub, 0);
                x.Label = L(who, "finish_fault: install writable pte, unlock_page");
                return SubResult.Done;
            }
        }
    }
}
