using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// How a device-side split queue reads and writes ring metadata (descriptor table, avail ring, used
/// ring). Two implementations exist with identical behaviour: <see cref="DirectRingAccessor"/> and
/// <see cref="CheckedRingAccessor"/>. An accessor is bound to one memory snapshot at a time and is
/// only used inside that snapshot's read section.
/// </summary>
public abstract class RingAccessor
{
    protected GuestMemory Memory { get; private set; } = GuestMemory.Empty;
    protected RingAddresses Rings { get; private set; }
    protected int QueueSize { get; private set; }

    /// <summary>Binds to a snapshot. False if this accessor cannot serve these rings in this snapshot.</summary>
    public bool Bind(GuestMemory memory, RingAddresses rings, int queueSize)
    {
        Memory = memory;
        Rings = rings;
        QueueSize = queueSize;
        return OnBind();
    }

    protected abstract bool OnBind();

    public abstract ushort ReadAvailIndex();
    public abstract ushort ReadAvailFlags();
    public abstract ushort ReadAvailEntry(int slot);
    public abstract ushort ReadUsedEvent();
    public abstract ushort ReadUsedIndex();
    public abstract VirtqDescriptor ReadDescriptor(int index);
    public abstract void WriteUsedElement(int slot, uint id, uint length);
    /// <summary>
    /// Publishes the used index with release semantics. Everything it exposes was logged before; the
    /// index itself is logged right after it is written (a log bit must never precede its write).
    /// </summary>
    public abstract void PublishUsedIndex(ushort index);
    public abstract void WriteUsedFlags(ushort flags);
    public abstract void WriteAvailEvent(ushort index);

    /// <summary>Logs a used-ring write at the ring's log address (the set_page_dirty analogue for the used ring).</summary>
    protected void LogUsedWrite(ulong offset, ulong length)
    {
        if (Rings.LogUsed) Memory.LogRingWrite(Rings.UsedLogGuestAddress + offset, length);
    }

    protected VirtqueueException OutOfMemory(string area, ulong offset)
        => new($"{area} at frontend address {AreaBase(area) + offset:x} is not {(area == "used ring" ? "writable " : "")}guest memory");

    private ulong AreaBase(string area) => area switch
    {
        "descriptor table" => Rings.Descriptors,
        "avail ring" => Rings.Avail,
        _ => Rings.Used,
    };
}
