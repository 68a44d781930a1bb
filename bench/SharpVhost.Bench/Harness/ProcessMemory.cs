using System.Globalization;

namespace SharpVhost.Bench;

/// <summary>Resident memory of a process from /proc/PID/smaps, optionally leaving out guest-memory mappings.</summary>
public static class ProcessMemory
{
    /// <summary>
    /// Resident kilobytes of <paramref name="pid"/>, not counting mappings of memfds (the guest memory a
    /// frontend shares: it is the frontend's memory, whoever touches it) other than the .NET runtime's
    /// own. Null if the process is gone.
    /// </summary>
    public static long? ResidentExcludingGuestKiB(int pid)
    {
        string[] lines;
        try { lines = File.ReadAllLines($"/proc/{pid}/smaps"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        long total = 0;
        bool guest = false;
        foreach (var line in lines)
        {
            if (IsMappingHeader(line))
            {
                // The .NET runtime's W^X "doublemapper" is a memfd too, but it holds JIT code: count it.
                guest = line.Contains("/memfd:", StringComparison.Ordinal) && !line.Contains("/memfd:doublemapper", StringComparison.Ordinal);
                continue;
            }
            if (!guest && line.StartsWith("Rss:", StringComparison.Ordinal))
                total += long.Parse(line.AsSpan(4).Trim().ToString().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        return total;
    }

    /// <summary>Mapping lines start with "start-end perms ..." (hex addresses); field lines with "Name:".</summary>
    private static bool IsMappingHeader(string line)
    {
        int space = line.IndexOf(' ');
        if (space <= 0) return false;
        var first = line.AsSpan(0, space);
        return first.IndexOf('-') > 0 && first.IndexOf(':') < 0;
    }
}
