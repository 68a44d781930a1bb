using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// An O_DIRECT read into the ring page: a short-lived FOLL_WRITE pin, the device's DMA write,
/// set_page_dirty_lock, unpin. The same hazard as a long-term pin, with a shorter window.
/// </summary>
public sealed class ODirect(Kernel k, string name) : Actor(k, name)
{
    public override bool InDirtyWindow(in StateVector s) => s[Me.Pc] is >= 2 and <= 4;
    public override bool HasDirtyWindow => true;

    public override bool Step(Exec x)
    {
        int p = x.Get(Me.Page);
        switch (Pc(x))
        {
            case 0:
            {
                int q = K.GupFastWritable(x);
                if (q >= 0)
                {
                    K.PinPage(x, q);
                    x.Set(Me.Page, q);
                    return Go(x, 2, "pin_user_pages_fast(FOLL_WRITE)");
                }
                var r = WriteFault.Step(K, x, Me, "");
                if (r == SubResult.Blocked) return false;
                if (r == SubResult.Failed) x.Set(Me.Pc, Done);
                return true;
            }
            case 2:
                K.AliasWrite(x, p, Name + " DMA");
                return Go(x, 3, "device DMA writes the page");
            case 3:
                if (!K.TryLockPage(x, p)) return false;
                return Go(x, 4, "set_page_dirty_lock: lock_page");
            case 4:
                K.SetPageDirty(x, p);
                K.UnlockPage(x, p);
                return Go(x, 5, "set_page_dirty, unlock_page");
            case 5:
                K.UnpinPage(x, p);
                return Go(x, Done, "unpin_user_page");
            default:
                return false;
        }
    }
}
