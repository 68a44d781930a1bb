using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Strategies;

/// <summary>
/// A vhost-user backend's queue worker with one asynchronous read in flight: it pops the chain inside a
/// read section (translating the buffer through the current snapshot), submits the read and leaves the
/// section; the storage then DMAs into the buffer through our mapping; the completion is published in a
/// later section. With <c>pins</c> the worker pins the generation the request was started under from pop
/// to publication (the rule); without, only its sections protect it (the grace period of the
/// synchronous design, which ignores requests in flight).
/// </summary>
public sealed class AsyncBackendWorker(Kernel k, string name, bool pins) : Worker(k, name, 1)
{
    private BackendMemory B { get; } = k.Backend;

    public override bool Step(Exec x)
    {
        switch (Pc(x))
        {
            case 0:
                x.Set(B.Section, x.Get(B.Gen));
                return Go(x, 1, "enter read section");
            case 1:
                if (x.Get(B.Section) != 1)
                {
                    x.Set(B.Section, 0);
                    return Go(x, Done, "pop: the buffer's region is no longer in the table; nothing started");
                }
                if (pins) x.Set(B.Pin, x.Get(B.Section));
                return Go(x, 2, pins ? "pop, translate buffer, submit read, pin its generation" : "pop, translate buffer, submit read");
            case 2:
                x.Set(B.Section, 0);
                return Go(x, 3, "leave read section (the read is in flight)");
            case 3:
                if (x.Get(B.Mapping) != 1)
                    x.Violate(Rule.UseAfterFree, x.Get(B.Mapping) == 0
                        ? "the read's DMA wrote through a mapping the backend had unmapped"
                        : "the read's DMA wrote into memory that was unmapped and reused for another mapping");
                return Go(x, 4, "storage DMA writes the guest buffer");
            case 4:
                x.Set(B.Section, x.Get(B.Gen));
                return Go(x, 5, "completion: enter read section");
            case 5:
                if (pins) x.Set(B.Pin, 0);
                return Go(x, 6, pins ? "write status, used element, used index; unpin" : "write status, used element, used index");
            case 6:
                x.Set(B.Section, 0);
                return Go(x, Done, "leave read section");
            default:
                return false;
        }
    }
}
