using System.Reflection;

namespace SharpVhost.Bench;

/// <summary>
/// How to start our own backend as a separate process: the <c>sharpvhost</c> executable that runs the
/// benchmark (<see cref="Environment.ProcessPath"/>), or <c>dotnet sharpvhost.dll</c> when hosted by dotnet.
/// </summary>
public sealed record SharpVhostCommand(string Program, IReadOnlyList<string> LeadingArgs)
{
    public static SharpVhostCommand FromCurrentProcess()
    {
        string path = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        if (Path.GetFileNameWithoutExtension(path) == "dotnet")
        {
            string entry = Assembly.GetEntryAssembly()?.Location ?? throw new InvalidOperationException("no entry assembly");
            return new SharpVhostCommand(path, [entry]);
        }
        return new SharpVhostCommand(path, []);
    }

    /// <summary>The CLI assembly next to <paramref name="directory"/>'s files (tests: the referenced CLI's output).</summary>
    public static SharpVhostCommand FromDirectory(string directory)
    {
        string apphost = Path.Combine(directory, "sharpvhost");
        if (File.Exists(apphost)) return new SharpVhostCommand(apphost, []);
        string dll = Path.Combine(directory, "sharpvhost.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException("sharpvhost is not built", dll);
        return new SharpVhostCommand(Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet", [dll]);
    }

    public IEnumerable<string> Args(params string[] args) => LeadingArgs.Concat(args);

    /// <summary>Whether our CLI has the subcommand <paramref name="name"/> (listed under "Commands:" in its --help).</summary>
    public bool HasCommand(string name)
    {
        string? help = Tools.Run(Program, [.. LeadingArgs, "--help"]);
        if (help is null) return false;
        bool inCommands = false;
        foreach (var line in help.Split('\n'))
        {
            if (line.TrimEnd() == "Commands:") { inCommands = true; continue; }
            if (inCommands && line.Split(' ', StringSplitOptions.RemoveEmptyEntries) is [var first, ..] && line.StartsWith("  ") && first == name) return true;
        }
        return false;
    }
}
