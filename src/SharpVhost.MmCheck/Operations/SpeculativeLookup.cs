using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>A lockless page-cache lookup elsewhere (find_get_page): get_page_unless_zero, then put_page.</summary>
public sealed class SpeculativeLookup(Kernel k, string name) : Actor(k, name)
{
    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
            {
                int c = K.CachedPage(x);
                if (c < 0) return Go(x, Done, Name + ": page not cached");
                if (x.Get(K.Ref[c]) == 0) return Go(x, Done, Name + ": get_page_unless_zero fails (frozen)");
                K.GetPage(x, c);
                x.Set(Me.Page, c);
                return Go(x, 1, Name + ": find_get_page: get_page_unless_zero");
            }
            case 1:
                K.PutPage(x, x.Get(Me.Page));
                return Go(x, Done, Name + ": put_page");
            default:
                return false;
        }
    }
}
