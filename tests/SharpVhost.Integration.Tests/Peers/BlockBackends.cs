namespace SharpVhost.Integration.Tests.Peers;

/// <summary>The block backends every guest block test runs against, by name (theory data).</summary>
public static class BlockBackends
{
    /// <summary>Add a backend here and every guest block test runs against it too.</summary>
    public static readonly IReadOnlyDictionary<string, Func<IBlockBackendUnderTest>> All =
        new Dictionary<string, Func<IBlockBackendUnderTest>>
        {
            ["qemu-storage-daemon"] = () => new QemuStorageDaemonBlockBackend(),
            ["sharpvhost-direct"] = () => new SharpVhostBlockBackend("direct"),
            ["sharpvhost-checked"] = () => new SharpVhostBlockBackend("checked"),
            // The image opened with O_DIRECT too (guest pages are aligned: reads and writes go through it, on io_uring).
            ["sharpvhost-odirect"] = () => new SharpVhostBlockBackend("direct", "--direct"),
        };

    public static IBlockBackendUnderTest Get(string name) => All[name]();

    public static TheoryData<string> Names() => new(All.Keys);
}
