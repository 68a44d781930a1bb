namespace SharpVhost.Cli;

/// <summary>
/// QEMU's backend program conventions (docs/interop/vhost-user.rst, "Backend program conventions"):
/// the backends can be run by name (sharpvhost-blk, vhost-user-blk, ... through a symlink to this
/// program) and answer --print-capabilities with a VHostUserBackendCapabilities object
/// (vhost-user.json) before looking at any other option.
/// </summary>
internal static class Capabilities
{
    public const string Block = """{"type":"block","features":["read-only","blk-file"]}""";
    public const string Net = """{"type":"net"}""";

    /// <summary>
    /// The arguments with the subcommand the program's name implies put first: argv[0] (as exec'd,
    /// not the resolved /proc/self/exe) named sharpvhost-blk or vhost-user-blk means "blk", -net "net".
    /// </summary>
    public static string[] WithImpliedCommand(string[] args, string? invokedAs)
    {
        var name = invokedAs is null ? "" : Path.GetFileName(invokedAs);
        string? command = name switch
        {
            "sharpvhost-blk" or "vhost-user-blk" => "blk",
            "sharpvhost-net" or "vhost-user-net" => "net",
            _ => null,
        };
        return command is null ? args : [command, .. args];
    }

    /// <summary>argv[0] of this process, from /proc/self/cmdline (.NET's own view resolves symlinks or names the dll).</summary>
    public static string? InvokedAs()
    {
        try
        {
            var cmdline = File.ReadAllBytes("/proc/self/cmdline");
            int end = Array.IndexOf(cmdline, (byte)0);
            return System.Text.Encoding.UTF8.GetString(cmdline, 0, end < 0 ? cmdline.Length : end);
        }
        catch (IOException) { return null; }
    }

    /// <summary>The JSON to print when the arguments ask a backend command for its capabilities, else null.</summary>
    public static string? Requested(string[] args)
    {
        if (args.Length == 0) return null;
        string? json = args[0] switch { "blk" => Block, "net" => Net, _ => null };
        if (json is null) return null;
        foreach (var a in args.AsSpan(1))
        {
            if (a == "--") break; // what follows is operands, not options
            if (a == "--print-capabilities" || a.StartsWith("--print-capabilities=", StringComparison.Ordinal)) return json;
        }
        return null;
    }
}
