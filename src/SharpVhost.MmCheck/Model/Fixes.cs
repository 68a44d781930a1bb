namespace SharpVhost.MmCheck.Model;

/// <summary>Optional kernel changes a scenario can switch on, to ask whether they close a race.</summary>
[Flags]
public enum Fixes
{
    None = 0,
    /// <summary>try_to_free_buffers refuses a page with page_maybe_dma_pinned().</summary>
    RefusePinnedFreeBuffers = 1,
    /// <summary>vhost_set_vring_num_addr resets invalidate_count (the July 2019 follow-up fix).</summary>
    ResetInvalidateCount = 2,
    /// <summary>Modern try_to_unmap/try_to_migrate refuse to unmap a pinned anon-exclusive page.</summary>
    AnonExclusivePin = 4,
    /// <summary>Modern GUP refuses FOLL_LONGTERM|FOLL_WRITE on a file mapping that needs writeback.</summary>
    LongtermFileRefused = 8,
}

public static class FixNames
{
    public static readonly (string Name, Fixes Fix)[] All =
    [
        ("refuse-pinned-free-buffers", Fixes.RefusePinnedFreeBuffers),
        ("reset-invalidate-count", Fixes.ResetInvalidateCount),
        ("anon-exclusive-pin", Fixes.AnonExclusivePin),
        ("longterm-file-refused", Fixes.LongtermFileRefused),
    ];
}
