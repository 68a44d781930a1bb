#if SHARPVHOST_BACKEND_ONLY
using System.CommandLine;

namespace SharpVhost.Cli.Commands;

// The native backend binary (scripts/package.sh, -p:SharpVhostBackendOnly=true) carries blk and net
// only: demo and mmcheck, with Spectre.Console and the mmcheck model, would add megabytes of code that
// every backend process maps (issue 16's resident-memory target). They stay in the JIT CLI
// (./sharpvhost, the dotnet tool); here they are hidden and say where to find them.

internal static class DemoCommand
{
    public static Command Create() => JitOnly.Create("demo");
}

internal static class MmCheckCommand
{
    public static Command Create() => JitOnly.Create("mmcheck");
}

internal static class JitOnly
{
    public static Command Create(string name)
    {
        var command = new Command(name, $"Not in the native backend binary: run ./sharpvhost {name} or the sharpvhost dotnet tool") { Hidden = true };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(_ =>
        {
            Console.Error.WriteLine($"sharpvhost {name}: not in the native backend binary (blk and net only); run ./sharpvhost {name} from the repository or the sharpvhost dotnet tool");
            return 2;
        });
        return command;
    }
}
#endif
