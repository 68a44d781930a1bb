namespace SharpVhost.Integration.Tests.Support;

/// <summary>Finds the programs and files the guest tests need, failing (never skipping) when absent.</summary>
public static class Tools
{
    private const string InstallHint = "run scripts/install-deps.sh (as root) to install the test peers";

    /// <summary>Full path of an executable on PATH, or an exception naming the package to install.</summary>
    public static string Require(string program, string package)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin";
        foreach (var dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/sbin").Append("/sbin"))
        {
            var candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException($"'{program}' not found on PATH (Debian package {package}): {InstallHint}");
    }

    /// <summary>A file shipped next to the test assembly (copied from scripts/guest).</summary>
    public static string GuestFile(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "guest", name);
        if (!File.Exists(path)) throw new FileNotFoundException($"guest file {name} missing from the test output", path);
        return path;
    }
}
