using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Strategies;

/// <summary>
/// The kernel's later answer (mmu_interval_notifier): the worker samples read_begin, gets and vmaps the
/// page, then publishes the map under its own lock only if read_retry says no invalidation intervened.
/// The callback, under the same lock, bumps the sequence, dirties the page while it is still mapped and
/// unpublishes the map; the worker vunmaps the stale map later (the callback never sleeps).
/// Worker fields: Aux2 = freshly vmapped page+1 not yet published, Cb = sampled sequence.
/// </summary>
public sealed class IntervalNotifier(Kernel k, string name, int rounds) : Worker(k, name, rounds), INotifierSubscriber
{
    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
                if (RoundsDone(x)) return Go(x, 7, "stop");
                if (x.Get(K.UserLock) != 0) return false;
                if (x.Get(K.VqMap) != 0)
                {
                    K.VmapWrite(x, x.Get(K.VqMap), Name);
                    NextRound(x);
                    return Go(x, 0, "spin_lock(user_lock), read avail/desc, write used ring through map, spin_unlock");
                }
                return Go(x, 1, "spin_lock(user_lock), no map, spin_unlock");
            case 1:
            {
                int stale = x.Get(K.Vmap);
                if (stale != 0)
                {
                    x.Set(K.Vmap, 0);
                    K.PutPage(x, stale - 1);
                    return Go(x, 1, "vunmap stale map, put_page");
                }
                if (x.Get(K.Active) != 0) return x.Wait("waits in mmu_interval_read_begin"); // read_begin waits for the invalidation to end
                x.Set(Me.Cb, x.Get(K.Seq));
                return Go(x, 2, "seq = mmu_interval_read_begin()");
            }
            case 2:
            {
                int p = K.GupFastWritable(x);
                if (p >= 0 && x.Get(Me.Sub) == 0)
                {
                    K.GetPage(x, p);
                    x.Set(Me.Aux2, p + 1);
                    x.Set(K.Vmap, p + 1);
                    return Go(x, 3, "get_user_pages_fast, vmap");
                }
                var r = WriteFault.Step(K, x, Me, "hmm_range_fault: ");
                if (r == SubResult.Blocked) return false;
                if (r == SubResult.Failed) { x.Set(Me.Aux, Rounds); x.Set(Me.Pc, 0); }
                return true;
            }
            case 3:
            {
                if (x.Get(K.UserLock) != 0) return false;
                int fresh = x.Get(Me.Aux2);
                x.Set(Me.Aux2, 0);
                if (x.Get(K.Seq) != x.Get(Me.Cb))
                {
                    x.Set(K.Vmap, 0);
                    K.PutPage(x, fresh - 1);
                    return Go(x, 1, "spin_lock(user_lock), mmu_interval_read_retry: retry; spin_unlock, vunmap, put_page");
                }
                x.Set(K.VqMap, fresh);
                return Go(x, 0, "spin_lock(user_lock), read_retry ok: publish map, spin_unlock");
            }
            case 7:
            {
                int m = x.Get(K.Vmap);
                if (m != 0)
                {
                    if (x.Get(K.UserLock) != 0) return false;
                    if (x.Get(K.VqMap) != 0) K.SetPageDirty(x, m - 1);
                    x.Set(K.VqMap, 0);
                    x.Set(K.Vmap, 0);
                    K.PutPage(x, m - 1);
                }
                return Go(x, Done, "teardown: set_page_dirty, vunmap, put_page");
            }
            default:
                return false;
        }
    }

    public SubResult OnInvalidateStart(Exec x, ActorSlots caller, int cbPc, bool blockable)
    {
        if (x.Get(K.UserLock) != 0) return SubResult.Blocked;
        x.Set(K.Seq, (x.Get(K.Seq) + 1) & 7);
        int m = x.Get(K.VqMap);
        if (m != 0)
        {
            K.SetPageDirty(x, m - 1);
            x.Set(K.VqMap, 0);
            x.Label = "vhost: spin_lock(user_lock), mmu_interval_set_seq, set_page_dirty, unpublish map, spin_unlock";
        }
        else x.Label = "vhost: spin_lock(user_lock), mmu_interval_set_seq, spin_unlock";
        return SubResult.Done;
    }

    public string OnInvalidateEnd(Exec x) => "";
}
