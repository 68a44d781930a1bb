using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// How a device-side packed queue reads and writes ring metadata: the descriptor ring (read and
/// written back), the driver area (read) and the device area (written). Two implementations with
/// identical behaviour, as for the split ring: <see cref="PackedDirectRingAccessor"/> and
/// <see cref="PackedCheckedRingAccessor"/>. Bound to one memory snapshot at a time and used only
/// inside that snapshot's read section.
/// </summary>
public abstract class PackedRingAccessor
{
    protected GuestMemory Memory { get; private set; } = GuestMemory.Empty;
    protected RingAddresses Rings { get; private set; }
    protected int QueueSize { get; private set; }

    /// <summary>Why the last bind failed, or null.</summary>
    public string? BindError { get; protected set; }

    /// <summary>Binds to a snapshot. False (see <see cref="BindError"/>) if this accessor cannot serve these rings in it.</summary>
    public bool Bind(GuestMemory memory, RingAddresses rings, int queueSize)
    {
        Memory = memory;
        Rings = rings;
        QueueSize = queueSize;
        BindError = null;
        return OnBind();
    }

    protected abstract bool OnBind();

    /// <summary>The flags of descriptor <paramref name="slot"/>, with acquire ordering: the rest of the descriptor is read after.</summary>
    public abstract ushort ReadFlags(int slot);
    /// <summary>The whole descriptor; its flags read first with acquire ordering.</summary>
    public abstract PackedDescriptor ReadDescriptor(int slot);
    /// <summary>Writes a used descriptor's id and length; the driver cannot see them until <see cref="PublishFlags"/>.</summary>
    public abstract void WriteUsed(int slot, ushort id, uint length);
    /// <summary>Writes a descriptor's flags with release ordering (everything written before becomes visible first).</summary>
    public abstract void PublishFlags(int slot, ushort flags);
    /// <summary><see cref="WriteUsed"/> then <see cref="PublishFlags"/> in one call (used descriptors after a batch's first).</summary>
    public abstract void WriteUsedAndPublish(int slot, ushort id, uint length, ushort flags);
    /// <summary>The driver event suppression structure as one value: off_wrap in bits 0-15, flags in bits 16-31.</summary>
    public abstract uint ReadDriverEvent();
    /// <summary>Writes the device event suppression structure (both fields in one store).</summary>
    public abstract void WriteDeviceEvent(ushort offWrap, ushort flags);

    /// <summary>
    /// Logs a write to the descriptor ring, after the write (a log bit must never precede its write).
    /// vhost-user asks for every change to the "descriptor" area to be logged at its guest address;
    /// with the ring's LOG flag DPDK logs packed write-back at the log address plus the offset, so
    /// both are marked (an extra bit costs the frontend one page copy; a missing one corrupts a migration).
    /// </summary>
    protected void LogDescriptorWrite(ulong guestAddress, ulong offset, ulong length)
    {
        if (Memory.Log is not { } log) return;
        log.Mark(guestAddress, length);
        if (Rings.LogUsed) Memory.LogRingWrite(Rings.UsedLogGuestAddress + offset, length);
    }

    protected VirtqueueException OutOfMemory(string area, ulong address, bool write)
        => new($"{area} at frontend address {address:x} is not {(write ? "writable " : "")}guest memory");
}
