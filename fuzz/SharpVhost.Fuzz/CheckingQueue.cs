using SharpVhost.Memory;
using SharpVhost.Virtio;

namespace SharpVhost.Fuzz;

/// <summary>
/// Passes everything to a real queue and checks what a device does with each chain: every popped
/// chain lies in the guest's memory, and no device reports more bytes written than the chain can take.
/// </summary>
public sealed class CheckingQueue(IDeviceQueue inner, GuestImage guest) : IDeviceQueue
{
    /// <summary>Chains completed (used elements added).</summary>
    public int Completed { get; private set; }

    public bool TryPop(DescriptorChain chain)
    {
        if (!inner.TryPop(chain)) return false;
        guest.CheckChain(chain);
        return true;
    }

    public void AddUsed(DescriptorChain chain, uint written)
    {
        if (written > chain.WritableBytes)
            throw new FuzzCheckFailedException($"device reports {written} bytes written into a chain with {chain.WritableBytes} writable");
        Completed++;
        inner.AddUsed(chain, written);
    }

    public int Index => inner.Index;
    public int Size => inner.Size;
    public MetadataAccess Access { get => inner.Access; set => inner.Access = value; }
    public bool EventIndex { get => inner.EventIndex; set => inner.EventIndex = value; }
    public bool NotifyOnEmpty { get => inner.NotifyOnEmpty; set => inner.NotifyOnEmpty = value; }
    public QueueCounters Counters => inner.Counters;
    public string? BrokenReason => inner.BrokenReason;
    public bool IsBroken => inner.IsBroken;
    public IotlbMiss? PendingMiss => inner.PendingMiss;
    public RingLayout Layout => inner.Layout;
    public int Resubmitted => inner.Resubmitted;
    public void UseInflight(nint region) => inner.UseInflight(region);
    public void SetSize(int size) => inner.SetSize(size);
    public void SetRings(RingAddresses rings) => inner.SetRings(rings);
    public void SetBase(uint vringBase) => inner.SetBase(vringBase);
    public uint GetBase() => inner.GetBase();
    public void Reset() => inner.Reset();
    public bool Attach(GuestMemory memory) => inner.Attach(memory);
    public void MarkBroken(string reason) => inner.MarkBroken(reason);
    public void UndoPop(int count) => inner.UndoPop(count);
    public void FlushUsed() => inner.FlushUsed();
    public bool ShouldInterrupt() => inner.ShouldInterrupt();
    public void DisableKicks() => inner.DisableKicks();
    public bool EnableKicks() => inner.EnableKicks();
    public bool HasAvailable() => inner.HasAvailable();
}
