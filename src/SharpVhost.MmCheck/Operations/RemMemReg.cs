using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Operations;

/// <summary>
/// The frontend removes the region (REM_MEM_REG, or a SET_MEM_TABLE without it): the backend publishes a
/// snapshot without it, waits for the grace period (readers in a section of an older generation, and
/// with the rule, pins of an older generation), unmaps the region and replies; the address range is then
/// free for the next mapping (the next table's regions, a log, anything).
/// </summary>
public sealed class RemMemReg(Kernel k, string name) : Actor(k, name)
{
    private BackendMemory B { get; } = k.Backend;

    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
                x.Set(B.Gen, 2);
                return Go(x, 1, "publish the snapshot without the region");
            case 1:
            {
                int section = x.Get(B.Section), pin = x.Get(B.Pin);
                if (section is not 0 && section < 2) return x.Wait("grace period: waits for a reader in an older section");
                if (pin is not 0 && pin < 2) return x.Wait("grace period: waits for an in-flight request pinning an older generation");
                return Go(x, 2, "grace period over");
            }
            case 2:
                x.Set(B.Mapping, 0);
                return Go(x, 3, "munmap the region, reply to the frontend");
            case 3:
                x.Set(B.Mapping, 2);
                return Go(x, Done, "the range is mapped again for something else");
            default:
                return false;
        }
    }
}
