using System.Text.RegularExpressions;

namespace SharpVhost.Integration.Tests.Guest;

/// <summary>The installed Debian kernel a guest boots: /boot/vmlinuz-RELEASE with /lib/modules/RELEASE.</summary>
public sealed record GuestKernel(string ImagePath, string Release)
{
    /// <summary>The newest kernel under /boot that has its modules installed; throws if there is none.</summary>
    public static GuestKernel FindInstalled()
    {
        var kernels = Directory.Exists("/boot") ? Directory.GetFiles("/boot", "vmlinuz-*") : [];
        var usable = kernels
            .Select(path => new GuestKernel(path, Path.GetFileName(path)["vmlinuz-".Length..]))
            .Where(k => Directory.Exists(Path.Combine("/lib/modules", k.Release)))
            .OrderByDescending(k => VersionKey(k.Release))
            .ToList();
        return usable.Count > 0
            ? usable[0]
            : throw new InvalidOperationException(
                "no guest kernel: /boot/vmlinuz-* with /lib/modules/<release> not found; " +
                "install linux-image-amd64 (scripts/install-deps.sh)");
    }

    // "6.1.0-56-amd64" sorts by its numbers, so 6.10 comes after 6.9.
    private static string VersionKey(string release) =>
        Regex.Replace(release, @"\d+", m => m.Value.PadLeft(8, '0'));
}
