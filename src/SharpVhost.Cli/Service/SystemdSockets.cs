using SharpVhost.Interop;

namespace SharpVhost.Cli.Service;

/// <summary>
/// systemd socket activation (sd_listen_fds): the sockets a .socket unit (or systemd-socket-activate)
/// opened for us, as fds 3, 4, ... with LISTEN_FDS=N, LISTEN_PID=our pid and optional
/// LISTEN_FDNAMES=a:b. The variables are removed once read so nothing we start inherits them.
/// </summary>
internal static class SystemdSockets
{
    public const int FirstFd = 3;

    /// <summary>One passed socket: its fd and the name systemd gave it (FileDescriptorName=, else "fdN").</summary>
    public readonly record struct Passed(int Fd, string Name);

    /// <summary>The passed sockets, empty when the variables are absent or meant for another process.</summary>
    public static IReadOnlyList<Passed> Take()
    {
        var fds = Environment.GetEnvironmentVariable("LISTEN_FDS");
        var pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        var names = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        Environment.SetEnvironmentVariable("LISTEN_PID", null);
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
        return Parse(fds, pid, names, Environment.ProcessId);
    }

    /// <summary>The rules of sd_listen_fds(3), on the variables' values (testable without a process).</summary>
    public static IReadOnlyList<Passed> Parse(string? listenFds, string? listenPid, string? listenFdNames, int ourPid)
    {
        if (listenFds is null || listenPid is null) return [];
        if (!int.TryParse(listenPid, out int pid) || pid != ourPid) return []; // set for a parent of ours: not ours
        if (!int.TryParse(listenFds, out int count) || count <= 0) return [];
        var names = listenFdNames?.Split(':') ?? [];
        var passed = new Passed[count];
        for (int i = 0; i < count; i++)
        {
            int fd = FirstFd + i;
            passed[i] = new Passed(fd, i < names.Length && names[i].Length > 0 ? names[i] : $"fd{fd}");
        }
        return passed;
    }

    /// <summary>Checks each passed fd is a socket and marks it close-on-exec.</summary>
    public static void Adopt(IReadOnlyList<Passed> passed)
    {
        foreach (var p in passed)
        {
            if (!FileOwnership.IsSocket(p.Fd)) throw new IOException($"LISTEN_FDS: fd {p.Fd} ({p.Name}) is not a socket");
            FileOwnership.SetCloseOnExec(p.Fd);
        }
    }
}
