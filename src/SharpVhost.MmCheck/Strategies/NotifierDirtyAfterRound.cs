using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Strategies;

/// <summary>
/// The RFC V2 shape: an MMU notifier tears the vmap down under vq->mutex; the worker holds vq->mutex for a
/// round, maps the page on demand with get_user_pages_fast, writes through the vmap and calls
/// set_page_dirty_lock after each round.
/// </summary>
public sealed class NotifierDirtyAfterRound(Kernel k, string name, int rounds) : Worker(k, name, rounds), INotifierSubscriber
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
                if (m != 0)
                {
                    K.VmapWrite(x, m, Name);
                    return Go(x, 4, "read avail/desc, write used ring through vmap");
                }
                int p = K.GupFastWritable(x);
                if (p < 0) return Go(x, 3, "get_user_pages_fast fails: use copy_to_user");
                K.GetPage(x, p);
                x.Set(K.Vmap, p + 1);
                x.Set(K.VqMap, p + 1);
                return Go(x, 2, "get_user_pages_fast, vmap, publish map");
            }
            case 2:
                K.VmapWrite(x, x.Get(K.VqMap), Name);
                return Go(x, 4, "read avail/desc, write used ring through vmap");
            case 3:
                return CopyRoundThen(x, 6);
            case 4:
            {
                int p = x.Get(K.VqMap) - 1;
                if (!K.TryLockPage(x, p)) return false;
                return Go(x, 5, "set_page_dirty_lock: lock_page");
            }
            case 5:
            {
                int p = x.Get(K.VqMap) - 1;
                K.SetPageDirty(x, p);
                K.UnlockPage(x, p);
                return Go(x, 6, "set_page_dirty, unlock_page");
            }
            case 6:
                x.Set(K.VqMutex, 0);
                NextRound(x);
                return Go(x, 0, "mutex_unlock(vq->mutex)");
            default:
                return false;
        }
    }

    private bool CopyRoundThen(Exec x, int next)
    {
        var r = CopyToUser(x);
        if (r == SubResult.Blocked) return false;
        if (r is SubResult.Done or SubResult.Failed) x.Set(Me.Pc, next);
        return true;
    }

    public SubResult OnInvalidateStart(Exec x, ActorSlots caller, int cbPc, bool blockable)
    {
        switch (cbPc)
        {
            case 0:
                if (x.Get(K.VqMutex) != 0) { x.Wait("(in invalidate_range_start) vhost: waits for vq->mutex"); return SubResult.Blocked; }
                K.MaySleep(x, blockable, "mutex_lock(vq->mutex)");
                x.Set(K.VqMutex, 1);
                x.Set(caller.Sub, 2);
                x.Label = "vhost: mutex_lock(vq->mutex)";
                return SubResult.Running;
            default:
            {
                int m = x.Get(K.VqMap);
                if (m != 0)
                {
                    x.Set(K.VqMap, 0);
                    x.Set(K.Vmap, 0);
                    K.PutPage(x, m - 1);
                }
                x.Set(K.VqMutex, 0);
                x.Label = "vhost: vunmap, put_page, mutex_unlock(vq->mutex)";
                return SubResult.Done;
            }
        }
    }

    public string OnInvalidateEnd(Exec x) => "";
}
