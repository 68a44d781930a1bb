using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Guest;

/// <summary>
/// Builds guest initramfs images with scripts/guest/build-initramfs.sh, once per (test script,
/// builder, kernel) content: later boots of the same script reuse the cached image.
/// </summary>
public static class InitramfsCache
{
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(2);
    private static readonly SemaphoreSlim BuildLock = new(1, 1);

    public static string CacheDirectory { get; } =
        Path.Combine(Directory.Exists("/tmp") ? "/tmp" : Path.GetTempPath(), "sharpvhost-initramfs-cache");

    /// <summary>Path of an initramfs that runs <paramref name="guestScriptPath"/> as its test.</summary>
    public static async Task<string> GetAsync(string guestScriptPath, GuestKernel kernel)
    {
        var builder = Tools.GuestFile("build-initramfs.sh");
        // The kernel's release and file time: a package update under the same release
        // replaces its modules too, and the image must then be rebuilt.
        var kernelStamp = $"{kernel.Release} {File.GetLastWriteTimeUtc(kernel.ImagePath).Ticks}";
        var key = Hash(File.ReadAllBytes(builder), File.ReadAllBytes(guestScriptPath), Encoding.UTF8.GetBytes(kernelStamp));
        var image = Path.Combine(CacheDirectory, $"{Path.GetFileNameWithoutExtension(guestScriptPath)}-{key[..16]}.gz");
        if (File.Exists(image))
        {
            File.SetLastWriteTimeUtc(image, DateTime.UtcNow); // marks it as in use for the pruning below
            return image;
        }

        await BuildLock.WaitAsync();
        try
        {
            if (File.Exists(image)) return image;
            Directory.CreateDirectory(CacheDirectory);
            PruneUnused();
            Tools.Require("cpio", "cpio");
            await RunBuilderAsync(builder, image, guestScriptPath, kernel.Release);
            return File.Exists(image) ? image : throw new InvalidOperationException($"builder did not produce {image}");
        }
        finally
        {
            BuildLock.Release();
        }
    }

    // Images of scripts that changed since are never used again: drop those idle for long.
    private static void PruneUnused()
    {
        foreach (var file in new DirectoryInfo(CacheDirectory).EnumerateFiles("*.gz"))
        {
            if (file.LastWriteTimeUtc < DateTime.UtcNow - TimeSpan.FromDays(14))
            {
                try { file.Delete(); }
                catch (IOException) { }
            }
        }
    }

    private static async Task RunBuilderAsync(string builder, string image, string script, string release)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { builder, image, script, release }) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start bash");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(BuildTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"initramfs build timed out after {BuildTimeout}");
        }
        if (process.ExitCode != 0)
            throw new InvalidOperationException(
                $"initramfs build failed ({process.ExitCode}):\n{await stdout}\n{await stderr}");
    }

    private static string Hash(params byte[][] parts)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var part in parts)
        {
            sha.AppendData(BitConverter.GetBytes(part.Length)); // length-prefixed, so parts cannot run together
            sha.AppendData(part);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
