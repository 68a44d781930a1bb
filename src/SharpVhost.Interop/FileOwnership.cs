using System.Runtime.InteropServices;

namespace SharpVhost.Interop;

/// <summary>
/// Group ownership and fd flags .NET has no API for: the group of a socket file a service creates
/// (so QEMU running as another user in that group may connect) and close-on-exec on inherited fds.
/// </summary>
public static class FileOwnership
{
    /// <summary>The gid of <paramref name="group"/>: a number as given, else a name looked up through NSS (getgrnam).</summary>
    public static int ResolveGroup(string group)
    {
        if (int.TryParse(group, out int gid) && gid >= 0) return gid;
        nint entry = Libc.Getgrnam(group);
        if (entry == 0) throw new ArgumentException($"no such group: {group}");
        // struct group { char *gr_name; char *gr_passwd; gid_t gr_gid; char **gr_mem; }
        return Marshal.ReadInt32(entry, 2 * IntPtr.Size);
    }

    /// <summary>chown(path, -1, gid): changes the group only (needs root or membership of the group).</summary>
    public static void SetGroup(string path, int gid)
    {
        if (Libc.Chown(path, -1, gid) != 0) throw Libc.Error($"chown {path}");
    }

    /// <summary>Sets FD_CLOEXEC, as sd_listen_fds does on the sockets systemd passes: children of ours must not inherit them.</summary>
    public static void SetCloseOnExec(int fd)
    {
        int flags = Libc.Fcntl(fd, Libc.F_GETFD, 0);
        if (flags < 0 || Libc.Fcntl(fd, Libc.F_SETFD, flags | Libc.FD_CLOEXEC) != 0) throw Libc.Error($"fcntl F_SETFD on fd {fd}");
    }

    /// <summary>Whether <paramref name="fd"/> is an open socket (what LISTEN_FDS promises).</summary>
    public static bool IsSocket(int fd)
    {
        try { return (File.ResolveLinkTarget($"/proc/self/fd/{fd}", false)?.Name ?? "").StartsWith("socket:", StringComparison.Ordinal); }
        catch (IOException) { return false; }
    }
}
