namespace SharpVhost.MmCheck.Model;

/// <summary>What backs the ring page: decides whether writeback, buffers and page_mkwrite exist.</summary>
public enum PageKind { Anon, Tmpfs, Hugetlbfs, Ext4 }

public static class PageKindNames
{
    public static string Name(this PageKind k) => k.ToString().ToLowerInvariant();

    public static bool TryParse(string s, out PageKind kind) => Enum.TryParse(s, ignoreCase: true, out kind);

    /// <summary>Only a block filesystem writes pages back and so write-protects them (page_mkclean).</summary>
    public static bool HasWriteback(this PageKind k) => k == PageKind.Ext4;

    /// <summary>Pages living in a file's page cache (shmem and hugetlbfs count) rather than anonymous memory.</summary>
    public static bool IsFile(this PageKind k) => k != PageKind.Anon;
}

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

/// <summary>Flags of the one modelled page-table entry.</summary>
[Flags]
public enum PteFlags : byte
{
    None = 0,
    Writable = 1,
    Dirty = 2,
    /// <summary>Not present: a swap or migration entry.</summary>
    SwapEntry = 4,
}
