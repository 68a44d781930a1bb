using SharpVhost.Interop;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// Who may connect to a socket file the backend creates: its permission bits and its group, so a
/// frontend running as another user (libvirt's qemu user) in that group can connect, and nobody else.
/// </summary>
public sealed record SocketFileAccess(UnixFileMode? Mode, int? Gid)
{
    public void ApplyTo(string path)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("socket file access is POSIX");
        if (Gid is { } gid) FileOwnership.SetGroup(path, gid);
        if (Mode is { } mode) File.SetUnixFileMode(path, mode);
    }

    /// <summary>An octal mode as chmod takes it ("0660", "660").</summary>
    public static UnixFileMode ParseMode(string octal)
    {
        if (octal.Length is 0 or > 4 || octal.Any(c => c is < '0' or > '7'))
            throw new FormatException($"socket mode must be octal, e.g. 0660 (got '{octal}')");
        return (UnixFileMode)Convert.ToInt32(octal, 8);
    }
}
