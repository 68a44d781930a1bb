namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// How to run our own `sharpvhost` command: the Cli project is a project reference, so its
/// build lands next to this test assembly and runs under the same dotnet host.
/// </summary>
public static class SharpVhostCli
{
    /// <summary>Program and leading arguments; append the subcommand and its options.</summary>
    public static (string Program, IReadOnlyList<string> Prefix) Command()
    {
        var dir = AppContext.BaseDirectory;
        var apphost = Path.Combine(dir, "sharpvhost");
        if (File.Exists(apphost)) return (apphost, []);
        var dll = Path.Combine(dir, "sharpvhost.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException("sharpvhost.dll not next to the tests (Cli project reference?)", dll);
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        return (dotnet, [dll]);
    }
}
