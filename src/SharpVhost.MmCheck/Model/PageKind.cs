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
