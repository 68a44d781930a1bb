namespace SharpVhost.MmCheck.Model;

/// <summary>Page flags, one byte per page.</summary>
[Flags]
public enum PageFlags : byte
{
    None = 0,
    Allocated = 1,
    Locked = 2,
    Dirty = 4,
    Writeback = 8,
    /// <summary>PagePrivate: buffer heads attached (ext4 needs them to write the page).</summary>
    Buffers = 16,
    /// <summary>In the page cache (or swap cache for anonymous memory).</summary>
    InCache = 32,
    Freed = 64,
    /// <summary>Set when page_mkclean or an unmap write-protected the page; cleared by the next write fault.</summary>
    WriteProtected = 128,
}
