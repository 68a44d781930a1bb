using SharpVhost.VhostUser.Backend;

namespace SharpVhost.Cli.Service;

/// <summary>
/// Where one backend port meets its frontend: a socket path it listens on (or connects to, in
/// client mode), or an fd it inherited (--fd, or systemd socket activation).
/// </summary>
internal sealed record BackendTarget(string Name, string? Path, int? Fd, bool Client)
{
    /// <summary>
    /// The targets the options name: --socket-path (each, listening or with --client connecting),
    /// else --fd, else the sockets systemd passed. Null with <paramref name="error"/> set when they conflict.
    /// </summary>
    public static IReadOnlyList<BackendTarget>? Resolve(
        IReadOnlyList<string> paths, IReadOnlyList<int> fds, bool client,
        IReadOnlyList<SystemdSockets.Passed> activated, out string? error)
    {
        error = null;
        if (paths.Count > 0 && fds.Count > 0) error = "--socket-path and --fd are incompatible";
        else if (client && paths.Count == 0) error = "--client connects to a --socket-path";
        else if (paths.Count > 0) return paths.Select(p => new BackendTarget(p, p, null, client)).ToList();
        else if (fds.Count > 0) return fds.Select(fd => new BackendTarget($"fd{fd}", null, fd, false)).ToList();
        else if (activated.Count > 0) return activated.Select(a => new BackendTarget(a.Name, null, a.Fd, false)).ToList();
        else error = "give --socket-path or --fd (or start under systemd socket activation: LISTEN_FDS)";
        return null;
    }

    /// <summary>Whether the backend creates this target's socket file itself (so --socket-mode/--socket-group apply).</summary>
    public bool CreatesSocketFile => Path is not null && !Client;

    /// <summary>Serves this target with <paramref name="server"/> until cancelled; <paramref name="ready"/> runs once it can take a frontend.</summary>
    public void Serve(BackendServer server, SocketFileAccess? access, CancellationToken cancel, Action ready)
    {
        if (Path is not null && Client)
        {
            ready();
            server.RunClient(Path, cancel);
        }
        else if (Path is not null) server.Run(Path, cancel, ready, access);
        else
        {
            ready();
            server.Run(Fd!.Value, cancel);
        }
    }
}
