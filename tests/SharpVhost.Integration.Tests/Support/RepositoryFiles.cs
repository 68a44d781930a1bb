namespace SharpVhost.Integration.Tests.Support;

/// <summary>Files of the repository itself (packaging/, scripts/), found by walking up from the test assembly to SharpVhost.slnx.</summary>
public static class RepositoryFiles
{
    public static string Root
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "SharpVhost.slnx"))) return dir.FullName;
            throw new DirectoryNotFoundException($"no SharpVhost.slnx above {AppContext.BaseDirectory}");
        }
    }

    public static string Get(params string[] parts) => Path.Combine([Root, .. parts]);
}
