using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Strategies;

/// <summary>
/// The version merged in v5.3-rc1 and reverted in v5.3: readers use the vmap under rcu_read_lock;
/// invalidate_range_start bumps invalidate_count, dirties the page and clears the map under mmu_lock,
/// then synchronize_rcu() and vunmap/put_page; invalidate_range_end decrements the count. The worker
/// re-maps (gup_fast + vmap) only while the count is zero: the <c>guard</c>, which a scenario can drop.
/// </summary>
public sealed class MergedRcu(Kernel k, string name, int rounds, bool guard) : Worker(k, name, rounds), INotifierSubscriber
{
    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
                if (RoundsDone(x)) return Go(x, Done, "stop");
                if (x.Get(K.VqMutex) != 0) return x.Wait("waits for vq->mutex");
                x.Set(K.VqMutex, 1);
                return Go(x, 1, "mutex_lock(vq->mutex)");
            case 1:
            {
                int m = x.Get(K.VqMap);
                x.Set(Me.Aux2, m);
                if (m == 0) return Go(x, 3, "rcu_read_lock, vq->maps is NULL, rcu_read_unlock");
                x.Set(K.Rcu, 1);
                return Go(x, 2, "rcu_read_lock, map = rcu_dereference(vq->maps)");
            }
            case 2:
                K.VmapWrite(x, x.Get(Me.Aux2), Name);
                x.Set(K.Rcu, 0);
                return Go(x, 6, "read avail/desc, write used ring through map, rcu_read_unlock");
            case 3:
            {
                var r = CopyToUser(x);
                if (r == SubResult.Blocked) return false;
                if (r is SubResult.Done or SubResult.Failed) x.Set(Me.Pc, 4);
                return true;
            }
            case 4:
                if (x.Get(K.MmuLock) != 0) return x.Wait("waits for mmu_lock");
                if (guard && x.GetSigned(K.InvCount) != 0)
                    return Go(x, 6, "vhost_map_prefetch: spin_lock(mmu_lock), invalidate_count != 0, give up");
                x.Set(K.MmuLock, 1);
                return Go(x, 5, (guard ? "vhost_map_prefetch: spin_lock(mmu_lock), invalidate_count == 0" : "vhost_map_prefetch: spin_lock(mmu_lock)"));
            case 5:
            {
                int p = K.GupFastWritable(x);
                x.Set(K.MmuLock, 0);
                if (p < 0) return Go(x, 6, "__get_user_pages_fast fails, spin_unlock");
                K.GetPage(x, p);
                x.Set(K.Vmap, p + 1);
                x.Set(K.VqMap, p + 1);
                return Go(x, 6, "__get_user_pages_fast, vmap, rcu_assign_pointer(vq->maps), spin_unlock");
            }
            case 6:
                x.Set(K.VqMutex, 0);
                NextRound(x);
                return Go(x, 0, "mutex_unlock(vq->mutex)");
            default:
                return false;
        }
    }

    public SubResult OnInvalidateStart(Exec x, ActorSlots caller, int cbPc, bool blockable)
    {
        switch (cbPc)
        {
            case 0:
            {
                if (x.Get(K.MmuLock) != 0) { x.Wait("(in invalidate_range_start) vhost: waits for mmu_lock"); return SubResult.Blocked; }
                x.Set(K.InvCount, x.GetSigned(K.InvCount) + 1);
                int m = x.Get(K.VqMap);
                x.Set(caller.Cb, m);
                if (m == 0)
                {
                    x.Label = "vhost: spin_lock(mmu_lock), ++invalidate_count, no map, spin_unlock";
                    return SubResult.Done;
                }
                K.SetPageDirty(x, m - 1);
                x.Set(K.VqMap, 0);
                x.Set(caller.Sub, 2);
                x.Label = "vhost: spin_lock(mmu_lock), ++invalidate_count, set_page_dirty, vq->maps = NULL, spin_unlock";
                return SubResult.Running;
            }
            case 1:
                if (x.Get(K.Rcu) != 0) { x.Wait("(in invalidate_range_start) vhost: waits in synchronize_rcu"); return SubResult.Blocked; }
                K.MaySleep(x, blockable, "synchronize_rcu()");
                x.Set(caller.Sub, 3);
                x.Label = "vhost: synchronize_rcu";
                return SubResult.Running;
            default:
            {
                int m = x.Get(caller.Cb);
                x.Set(K.Vmap, 0);
                K.PutPage(x, m - 1);
                x.Set(caller.Cb, 0);
                x.Label = "vhost_map_unprefetch: vunmap, put_page";
                return SubResult.Done;
            }
        }
    }

    public string OnInvalidateEnd(Exec x)
    {
        int c = x.GetSigned(K.InvCount) - 1;
        x.Set(K.InvCount, c);
        if (c < 0) x.Violate(Rule.InvalidateCounter, "invalidate_count went negative in invalidate_range_end");
        return "vhost: spin_lock(mmu_lock), --invalidate_count, spin_unlock";
    }
}
