using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>munmap of the ring's user range: notifiers around zapping the pte; the VMA is gone afterwards.</summary>
public sealed class Munmap(Kernel k, string name) : Invalidator(k, name)
{
    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
                return StartStep(x, 1);
            case 1:
            {
                int p = K.MappedPage(x);
                if (p >= 0)
                {
                    if ((x.Get(K.PteFlagsField) & (int)PteFlags.Dirty) != 0 && K.Kind.IsFile()) K.SetPageDirty(x, p);
                    K.PutPage(x, p);
                }
                x.Set(K.PtePage, 0);
                x.Set(K.PteFlagsField, 0);
                x.Set(K.VmaLive, 0);
                return Go(x, 2, "detach VMA, zap_pte_range, put_page");
            }
            case 2:
                return EndStep(x, Done);
            default:
                return false;
        }
    }
}
