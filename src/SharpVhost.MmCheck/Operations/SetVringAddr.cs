using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// VHOST_SET_VRING_ADDR in the merged series: under vq->mutex, unregister the notifier, drop the maps,
/// then register again (mm_take_all_locks waits for invalidations in progress). With the follow-up
/// fix it also resets invalidate_count.
/// </summary>
public sealed class SetVringAddr(Kernel k, string name) : Actor(k, name)
{
    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
                if (x.Get(K.VqMutex) != 0) return x.Wait("waits for vq->mutex");
                x.Set(K.VqMutex, 1);
                return Go(x, 1, "mutex_lock(vq->mutex)");
            case 1:
                if (x.Get(K.InCallback) != 0) return x.Wait("waits for notifier callbacks to finish"); // SRCU: wait for callbacks running now, not for start..end
                x.Set(K.Registered, 0);
                return Go(x, 2, "mmu_notifier_unregister");
            case 2:
            {
                int m = x.Get(K.VqMap);
                if (m != 0)
                {
                    x.Set(K.VqMap, 0);
                    if (x.Get(K.Vmap) == m) x.Set(K.Vmap, 0);
                    K.SetPageDirty(x, m - 1);
                    K.PutPage(x, m - 1);
                }
                if (K.Has(Fixes.ResetInvalidateCount)) x.Set(K.InvCount, 0);
                return Go(x, 3, (K.Has(Fixes.ResetInvalidateCount) ? "vhost_uninit_vq_maps, invalidate_count = 0, set new addresses" : "vhost_uninit_vq_maps, set new addresses"));
            }
            case 3:
                if (x.Get(K.Active) != 0) return x.Wait("waits for invalidations in progress"); // mm_take_all_locks excludes invalidations in progress
                x.Set(K.Registered, 1);
                return Go(x, 4, "mmu_notifier_register");
            case 4:
                x.Set(K.VqMutex, 0);
                return Go(x, Done, "mutex_unlock(vq->mutex)");
            default:
                return false;
        }
    }
}
