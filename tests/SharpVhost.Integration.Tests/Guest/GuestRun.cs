namespace SharpVhost.Integration.Tests.Guest;

/// <summary>The outcome of a guest's test script: its exit status and what it printed.</summary>
public sealed record GuestRun(string Name, int ExitStatus, IReadOnlyList<string> OutputLines, string Console, string PeerLog)
{
    /// <summary>Console and peer log, for failure messages.</summary>
    public string Report => PeerLog.Length == 0 ? Console : $"{Console}\n--- peer log ---\n{PeerLog}";

    /// <summary>The words after <paramref name="tag"/> on each script line that starts with it.</summary>
    public IReadOnlyList<string[]> Tagged(string tag) =>
        OutputLines
            .Where(line => line.StartsWith(tag + " ", StringComparison.Ordinal))
            .Select(line => line[(tag.Length + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .ToList();

    /// <summary>The single value of a "TAG value" line; fails with the console if absent.</summary>
    public string Single(string tag)
    {
        var hits = Tagged(tag);
        return hits.Count == 1 && hits[0].Length == 1
            ? hits[0][0]
            : throw new Xunit.Sdk.XunitException($"{Name}: expected one '{tag} <value>' line, found {hits.Count}.\n{Report}");
    }

    /// <summary>Fails the test, with the console log, unless the script exited 0.</summary>
    public GuestRun AssertSucceeded()
    {
        if (ExitStatus != 0)
            throw new Xunit.Sdk.XunitException($"{Name}: guest script exited {ExitStatus}.\n--- console ---\n{Report}");
        return this;
    }
}
