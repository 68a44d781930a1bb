namespace SharpVhost.MmCheck.Model;

/// <summary>
/// The shared kernel objects: up to three page frames (the ring page and the pages that may replace it
/// after reclaim or migration), the one page-table entry of the ring's user address, the VMA, and the
/// notifier state the strategies use. Helpers implement the primitive kernel operations on them.
/// </summary>
public sealed class Kernel
{
    public const int Pages = 3;

    public readonly Layout Layout = new();

    /// <summary>The backend's own memory (only the in-flight scenarios use it: created by the first actor that asks).</summary>
    public BackendMemory Backend => _backend ??= new BackendMemory(Layout);
    private BackendMemory? _backend;
    public bool HasBackend => _backend is not null;
    public readonly PageKind Kind;
    public readonly Fixes Fixes;
    public readonly int[] Ref = new int[Pages], Pin = new int[Pages], Flags = new int[Pages];

    /// <summary>Page-table entry: 0 none, else page index + 1; its flags; whether the VMA still exists.</summary>
    public readonly int PtePage, PteFlagsField, VmaLive;

    /// <summary>vmap'd alias (page+1, 0 none); the pointer published to the worker (vq->maps); the merged invalidate_count.</summary>
    public readonly int Vmap, VqMap, InvCount;

    /// <summary>Locks: vq->mmu_lock spinlock, the driver's user lock (interval notifier), vq->mutex; worker in RCU read side.</summary>
    public readonly int MmuLock, UserLock, VqMutex, Rcu;

    /// <summary>Interval-notifier sequence; invalidations in progress (start seen, end not yet); notifier registered; callbacks running.</summary>
    public readonly int Seq, Active, Registered, InCallback;

    public INotifierSubscriber? Subscriber;

    public Kernel(PageKind kind, Fixes fixes)
    {
        Kind = kind;
        Fixes = fixes;
        for (int i = 0; i < Pages; i++)
        {
            Ref[i] = Layout.Add($"page{i}.ref");
            Pin[i] = Layout.Add($"page{i}.pin");
            Flags[i] = Layout.Add($"page{i}.flags");
        }
        PtePage = Layout.Add("pte.page");
        PteFlagsField = Layout.Add("pte.flags");
        VmaLive = Layout.Add("vma.live");
        Vmap = Layout.Add("vmap");
        VqMap = Layout.Add("vq.map");
        InvCount = Layout.Add("vq.invalidate_count");
        MmuLock = Layout.Add("vq.mmu_lock");
        UserLock = Layout.Add("user_lock");
        VqMutex = Layout.Add("vq.mutex");
        Rcu = Layout.Add("rcu_reader");
        Seq = Layout.Add("interval.seq");
        Active = Layout.Add("mm.active_invalidations");
        Registered = Layout.Add("notifier.registered");
        InCallback = Layout.Add("notifier.in_callback");
    }

    public bool Has(Fixes f) => (Fixes & f) != 0;

    /// <summary>The initial state: page 0 is mapped at the ring address; ext4 pages start clean and read-only.</summary>
    public void Init(ref StateVector s)
    {
        _backend?.Init(ref s);
        var f = PageFlags.Allocated;
        if (Kind.IsFile()) f |= PageFlags.InCache;
        if (Kind == PageKind.Ext4) f |= PageFlags.Buffers;
        if (Kind is PageKind.Anon or PageKind.Tmpfs) f |= PageFlags.Dirty;
        s[Flags[0]] = (byte)f;
        s[Ref[0]] = (byte)(Kind.IsFile() ? 2 : 1);
        s[PtePage] = 1;
        s[PteFlagsField] = (byte)(Kind == PageKind.Ext4 ? PteFlags.None : PteFlags.Writable | PteFlags.Dirty);
        s[VmaLive] = 1;
        s[Registered] = (byte)(Subscriber is null ? 0 : 1);
    }

    // ---- pages ----

    public bool PageHas(Exec x, int p, PageFlags f) => x.Has(Flags[p], f);

    /// <summary>The page currently caching the ring's contents (page cache or swap cache), or -1.</summary>
    public int CachedPage(Exec x)
    {
        for (int p = 0; p < Pages; p++)
        {
            int f = x.Get(Flags[p]);
            if ((f & (int)PageFlags.InCache) != 0 && (f & (int)PageFlags.Freed) == 0) return p;
        }
        return -1;
    }

    /// <summary>The page the pte maps, or -1 when the pte is none or a swap/migration entry.</summary>
    public int MappedPage(Exec x)
    {
        int pte = x.Get(PtePage);
        if (pte == 0 || (x.Get(PteFlagsField) & (int)PteFlags.SwapEntry) != 0) return -1;
        return pte - 1;
    }

    /// <summary>The page reclaim or migration would pick: the mapped page, else the cached one.</summary>
    public int CurrentPage(Exec x)
    {
        int p = MappedPage(x);
        return p >= 0 ? p : CachedPage(x);
    }

    public int FreeSlot(Exec x)
    {
        for (int p = 0; p < Pages; p++)
            if (x.Get(Flags[p]) == 0) return p;
        return -1;
    }

    public void GetPage(Exec x, int p)
    {
        if (PageHas(x, p, PageFlags.Freed)) x.Violate(Rule.UseAfterFree, $"get_page on freed page {p}");
        x.Set(Ref[p], x.Get(Ref[p]) + 1);
    }

    public void PutPage(Exec x, int p)
    {
        int r = x.Get(Ref[p]) - 1;
        if (r < 0) { x.Violate(Rule.UseAfterFree, $"put_page on page {p} with refcount 0"); r = 0; }
        x.Set(Ref[p], r);
        if (r == 0) x.Set(Flags[p], (int)(PageFlags.Allocated | PageFlags.Freed));
    }

    public void PinPage(Exec x, int p)
    {
        GetPage(x, p);
        x.Set(Pin[p], x.Get(Pin[p]) + 1);
    }

    public void UnpinPage(Exec x, int p)
    {
        x.Set(Pin[p], x.Get(Pin[p]) - 1);
        PutPage(x, p);
    }

    public bool MaybeDmaPinned(Exec x, int p) => x.Get(Pin[p]) > 0;

    public void SetPageDirty(Exec x, int p)
    {
        if (PageHas(x, p, PageFlags.Freed)) { x.Violate(Rule.UseAfterFree, $"set_page_dirty on freed page {p}"); return; }
        x.SetFlag(Flags[p], PageFlags.Dirty);
    }

    /// <summary>lock_page: false (blocked) while someone else holds the lock.</summary>
    public bool TryLockPage(Exec x, int p)
    {
        if (PageHas(x, p, PageFlags.Locked)) return x.Wait("waits in lock_page");
        x.SetFlag(Flags[p], PageFlags.Locked);
        return true;
    }

    public void UnlockPage(Exec x, int p) => x.ClearFlag(Flags[p], PageFlags.Locked);

    /// <summary>writepage: the ext4 BUG fires when the page has no buffers.</summary>
    public void WritePage(Exec x, int p, string who)
    {
        if (Kind == PageKind.Ext4 && !PageHas(x, p, PageFlags.Buffers))
            x.Violate(Rule.Ext4NoBuffersBug, $"{who}: ext4 writepage on dirty page {p} without buffers (BUG_ON(!page_has_buffers))");
    }

    // ---- accesses ----

    /// <summary>A write through the user page table (copy_to_user): needs a present writable pte.</summary>
    public bool UserWriteOk(Exec x)
    {
        if (x.Get(VmaLive) == 0) return false;
        int p = MappedPage(x);
        return p >= 0 && (x.Get(PteFlagsField) & (int)PteFlags.Writable) != 0;
    }

    public void UserWrite(Exec x)
    {
        int p = MappedPage(x);
        if (PageHas(x, p, PageFlags.Freed)) x.Violate(Rule.UseAfterFree, $"user pte maps freed page {p}");
        x.Set(PteFlagsField, x.Get(PteFlagsField) | (int)PteFlags.Dirty);
    }

    /// <summary>A write through a kernel alias of page <paramref name="p"/> (vmap or a pinned page's DMA).</summary>
    public void AliasWrite(Exec x, int p, string who)
    {
        if (PageHas(x, p, PageFlags.Freed))
            x.Violate(Rule.UseAfterFree, $"{who} writes page {p} after it was freed");
        else if (Kind.HasWriteback() && PageHas(x, p, PageFlags.WriteProtected))
            x.Violate(Rule.LostWrite, $"{who} writes page {p} after page_mkclean/unmap write-protected it and before any page_mkwrite");
    }

    /// <summary>A write through the vmap'd alias the caller believes in: torn-down vmaps count as use-after-free.</summary>
    public void VmapWrite(Exec x, int lmap, string who)
    {
        if (x.Get(Vmap) != lmap)
            x.Violate(Rule.UseAfterFree, $"{who} writes through a vmap of page {lmap - 1} that was already torn down");
        AliasWrite(x, lmap - 1, who);
    }

    /// <summary>GUP fast: lockless walk that succeeds only on a present, writable pte of a live page.</summary>
    public int GupFastWritable(Exec x)
    {
        if (!UserWriteOk(x)) return -1;
        int p = MappedPage(x);
        if (x.Get(Ref[p]) == 0) return -1;
        return p;
    }

    // ---- MMU notifiers ----

    /// <summary>
    /// One scheduler step of mmu_notifier_invalidate_range_start on behalf of <paramref name="a"/>.
    /// The first step counts the invalidation as active and enters the subscriber's callback.
    /// </summary>
    public SubResult InvalidateStart(Exec x, ActorSlots a, bool blockable)
    {
        int sub = x.Get(a.Sub);
        bool first = sub == 0;
        if (first && (x.Get(Registered) == 0 || Subscriber is null))
        {
            x.Set(Active, x.Get(Active) + 1);
            x.Label = "invalidate_range_start";
            return SubResult.Done;
        }
        var r = Subscriber!.OnInvalidateStart(x, a, first ? 0 : sub - 1, blockable);
        if (r == SubResult.Blocked) return r;
        if (first)
        {
            x.Set(Active, x.Get(Active) + 1);
            x.Set(InCallback, x.Get(InCallback) + 1);
            x.Label = "invalidate_range_start -> " + x.Label;
        }
        else x.Label = "(in invalidate_range_start) " + x.Label;
        if (r == SubResult.Done)
        {
            x.Set(InCallback, x.Get(InCallback) - 1);
            x.Set(a.Sub, 0);
        }
        return r;
    }

    public void InvalidateEnd(Exec x)
    {
        x.Set(Active, x.Get(Active) - 1);
        x.Label = "invalidate_range_end";
        if (x.Get(Registered) != 0 && Subscriber is not null)
        {
            string l = Subscriber.OnInvalidateEnd(x);
            if (l.Length > 0) x.Label += " -> " + l;
        }
    }

    /// <summary>Called by a callback about to sleep: a violation when the invalidation is non-blocking.</summary>
    public void MaySleep(Exec x, bool blockable, string what)
    {
        if (!blockable) x.Violate(Rule.SleepInNonblockingNotifier, $"{what} in an invalidate_range_start called with blockable=false");
    }
}
