namespace SharpVhost.Virtio;

/// <summary>
/// Where a queue's three areas are, in the frontend's virtual address space (as SET_VRING_ADDR gives
/// them), and where used-ring writes are logged in guest-physical space when <see cref="LogUsed"/> is set.
/// </summary>
public readonly record struct RingAddresses(ulong Descriptors, ulong Avail, ulong Used, ulong UsedLogGuestAddress = 0, bool LogUsed = false);

/// <summary>Which metadata accessor a queue uses.</summary>
public enum MetadataAccess
{
    /// <summary>Pointers into our mapping, validated once per memory generation (the vmap analogue).</summary>
    Direct,
    /// <summary>Translate, bounds-check and copy on every access (the copy_user analogue).</summary>
    Checked,
}
