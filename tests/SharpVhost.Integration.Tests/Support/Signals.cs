using System.Runtime.InteropServices;

namespace SharpVhost.Integration.Tests.Support;

/// <summary>
/// SIGTERM for the processes a test started: .NET only offers SIGKILL, but a backend should get
/// the chance to stop cleanly (and its exit on SIGTERM is part of what we test later).
/// </summary>
public static partial class Signals
{
    private const int SigTerm = 15, SigHup = 1;

    public static void Terminate(int pid) => _ = Kill(pid, SigTerm);

    /// <summary>SIGHUP: what systemctl reload and a closed terminal send; a backend must survive it.</summary>
    public static void Hangup(int pid) => _ = Kill(pid, SigHup);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
