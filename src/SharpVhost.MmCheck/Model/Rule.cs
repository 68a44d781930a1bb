namespace SharpVhost.MmCheck.Model;

/// <summary>The rules the detectors check; each is one way the review said things go wrong.</summary>
public enum Rule
{
    /// <summary>A dirty page without buffers reaches ext4's writepage (the BUG_ON).</summary>
    Ext4NoBuffersBug,
    /// <summary>A write through a kernel alias after the pte was write-protected and before the next page_mkwrite.</summary>
    LostWrite,
    /// <summary>An access to a freed page or through a torn-down mapping.</summary>
    UseAfterFree,
    /// <summary>The merged series' invalidate counter went negative or stayed non-zero.</summary>
    InvalidateCounter,
    /// <summary>A notifier callback slept where the caller said it may not block.</summary>
    SleepInNonblockingNotifier,
    /// <summary>Nobody can move but not everybody has finished.</summary>
    Deadlock,
}

public static class RuleNames
{
    public static string Name(this Rule r) => r switch
    {
        Rule.Ext4NoBuffersBug => "ext4-no-buffers-bug",
        Rule.LostWrite => "lost-write",
        Rule.UseAfterFree => "use-after-free",
        Rule.InvalidateCounter => "invalidate-counter",
        Rule.SleepInNonblockingNotifier => "sleep-in-notifier",
        Rule.Deadlock => "deadlock",
        _ => r.ToString(),
    };

    public static bool TryParse(string s, out Rule rule)
    {
        foreach (var r in Enum.GetValues<Rule>())
            if (r.Name() == s) { rule = r; return true; }
        rule = default;
        return false;
    }

    public static IEnumerable<string> All => Enum.GetValues<Rule>().Select(r => r.Name());
}
