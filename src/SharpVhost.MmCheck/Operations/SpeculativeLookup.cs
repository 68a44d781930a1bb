using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// A lockless page-cache lookup elsewhere (find_get_page): get_page_unless_zero, then put_page,
/// <c>passes</c> times. Its transient reference is what page_ref_freeze must not miss.
/// </summary>
public sealed class SpeculativeLookup(Kernel k, string name, int passes) : Actor(k, name)
{
    public override void Init(ref StateVector s) => s[Me.Aux] = (byte)passes;

    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
            {
                int c = K.CachedPage(x);
                if (c < 0) return Go(x, Done, "page not cached");
                if (x.Get(K.Ref[c]) == 0) return Go(x, Done, "get_page_unless_zero fails (frozen)");
                K.GetPage(x, c);
                x.Set(Me.Page, c);
                return Go(x, 1, "find_get_page: get_page_unless_zero");
            }
            case 1:
            {
                K.PutPage(x, x.Get(Me.Page));
                int left = x.Get(Me.Aux) - 1;
                x.Set(Me.Aux, left);
                return Go(x, left == 0 ? Done : 0, "put_page");
            }
            default:
                return false;
        }
    }
}
