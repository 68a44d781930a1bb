namespace SharpVhost.Integration.Tests.Guest;

/// <summary>What one guest boots with. <see cref="Parameters"/> reach the guest script as SV_* variables.</summary>
public sealed record QemuGuestOptions
{
    public required GuestKernel Kernel { get; init; }

    /// <summary>Initramfs from <see cref="InitramfsCache"/>.</summary>
    public required string Initramfs { get; init; }

    public IReadOnlyList<VhostUserDevice> Devices { get; init; } = [];

    /// <summary>Name/value pairs passed on the kernel command line as SV_NAME=value (no spaces).</summary>
    public IReadOnlyDictionary<string, string> Parameters { get; init; } = new Dictionary<string, string>();

    public int MemoryMiB { get; init; } = 256;

    /// <summary>vCPUs. A guest shows at most one block queue per vCPU, so 2 queues need 2 CPUs.</summary>
    public int Cpus { get; init; } = 1;

    /// <summary>A name for messages and the console log file.</summary>
    public string Name { get; init; } = "guest";

    /// <summary>Where the console log is written (kept while the test runs, for failure messages).</summary>
    public required string WorkDirectory { get; init; }

    /// <summary>More QEMU arguments, e.g. a q35 machine with an intel-iommu device.</summary>
    public IReadOnlyList<string> ExtraQemuArguments { get; init; } = [];

    /// <summary>More kernel command-line words, e.g. "intel_iommu=on".</summary>
    public IReadOnlyList<string> ExtraKernelArguments { get; init; } = [];

    /// <summary>
    /// Text added to failure messages, read when a failure is reported: typically the
    /// backend's log, which often says why the guest hung.
    /// </summary>
    public Func<string>? PeerLog { get; init; }

    /// <summary>Upper bound for the whole boot, script and power-off.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(3);
}
