namespace SharpVhost.MmCheck.Model;

/// <summary>
/// A vhost-user backend's view of one guest memory region, for the scenarios about its own rule (not
/// the kernel's): the snapshot generation, whether our mapping of the region is live, and the worker's
/// read section and in-flight pin (docs/invalidation.md, "Requests in flight").
/// Gen: 1 while the region is in the table, 2 once the frontend removed it. Mapping: 1 ours, 0
/// unmapped, 2 the address range reused for another mapping. Section/Pin: the generation the worker
/// announced or pins, 0 for none.
/// </summary>
public sealed class BackendMemory
{
    public readonly int Gen, Mapping, Section, Pin;

    public BackendMemory(Layout layout)
    {
        Gen = layout.Add("be.gen");
        Mapping = layout.Add("be.mapping");
        Section = layout.Add("be.section");
        Pin = layout.Add("be.pin");
    }

    public void Init(ref StateVector s)
    {
        s[Gen] = 1;
        s[Mapping] = 1;
    }
}
