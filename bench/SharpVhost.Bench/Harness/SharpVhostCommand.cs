namespace SharpVhost.Bench;

/// <summary>
/// How to start our own backend as a separate process: a program path (the NativeAOT binary, or the JIT
/// CLI's apphost) or <c>dotnet sharpvhost.dll</c>. The bench is its own executable (issue 16): it never
/// runs the backend in its own process, so what it measures is what ships.
/// </summary>
public sealed record SharpVhostCommand(string Program, IReadOnlyList<string> LeadingArgs)
{
    /// <summary>"NativeAOT" or "JIT": a managed apphost has its <c>.dll</c> beside it; a native binary has none.</summary>
    public string Kind => LeadingArgs.Count > 0 || File.Exists(Path.ChangeExtension(Program, ".dll")) ? "JIT" : "NativeAOT";

    /// <summary>A program given by path (an apphost or a native binary), or a <c>.dll</c> run by dotnet.</summary>
    public static SharpVhostCommand FromProgram(string path)
    {
        string full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new FileNotFoundException("no sharpvhost program there", full);
        return full.EndsWith(".dll", StringComparison.Ordinal) ? new SharpVhostCommand(DotnetHost(), [full]) : new SharpVhostCommand(full, []);
    }

    /// <summary>The CLI next to <paramref name="directory"/>'s files (tests and the bench: the referenced CLI's output).</summary>
    public static SharpVhostCommand FromDirectory(string directory)
    {
        string apphost = Path.Combine(directory, "sharpvhost");
        if (File.Exists(apphost)) return new SharpVhostCommand(apphost, []);
        string dll = Path.Combine(directory, "sharpvhost.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException("sharpvhost is not built", dll);
        return new SharpVhostCommand(DotnetHost(), [dll]);
    }

    private static string DotnetHost() => Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";

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
