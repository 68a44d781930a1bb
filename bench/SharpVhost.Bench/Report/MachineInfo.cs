using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SharpVhost.Bench.Report;

/// <summary>What the numbers were taken on: CPU, kernel, runtime and the peers' versions.</summary>
public sealed record MachineInfo
{
    public required string CpuModel { get; init; }
    public required int Cpus { get; init; }
    public required string Kernel { get; init; }
    public required string Runtime { get; init; }
    public required string QemuStorageDaemon { get; init; }
    public required string Dpdk { get; init; }
    /// <summary>1-, 5- and 15-minute load averages when the run started: other work on the machine.</summary>
    public required string LoadAverage { get; init; }
    public required string Hypervisor { get; init; }

    public static MachineInfo Collect() => new()
    {
        CpuModel = CpuInfoField("model name") ?? RuntimeInformation.ProcessArchitecture.ToString(),
        Cpus = Environment.ProcessorCount,
        Kernel = ReadTrimmed("/proc/sys/kernel/osrelease") ?? RuntimeInformation.OSDescription,
        Runtime = RuntimeInformation.FrameworkDescription,
        QemuStorageDaemon = FirstLine(Tools.Run(Tools.QemuStorageDaemon, "--version")) ?? "not installed",
        Dpdk = PackageVersion("dpdk") ?? "not installed",
        LoadAverage = string.Join(' ', (ReadTrimmed("/proc/loadavg") ?? "").Split(' ').Take(3)),
        Hypervisor = (CpuInfoField("flags") ?? "").Split(' ').Contains("hypervisor") ? "virtual machine" : "bare metal",
    };

    private static string? CpuInfoField(string name)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon > 0 && line[..colon].Trim() == name) return line[(colon + 1)..].Trim();
            }
        }
        catch (IOException) { }
        return null;
    }

    private static string? ReadTrimmed(string path)
    {
        try { return File.ReadAllText(path).Trim(); }
        catch (IOException) { return null; }
    }

    private static string? FirstLine(string? text) => text?.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim();

    private static string? PackageVersion(string package)
    {
        string? version = Tools.Run("dpkg-query", "-W", "-f=${Version}", package);
        return string.IsNullOrWhiteSpace(version) ? null : $"{package} {version.Trim()}";
    }
}
