namespace SharpVhost.Integration.Tests.Peers;

/// <summary>The net backends every two-guest test runs against, by name (theory data).</summary>
public static class NetBackends
{
    /// <summary>Add a backend here and every two-guest net test runs against it too.</summary>
    public static readonly IReadOnlyDictionary<string, Func<INetBackendUnderTest>> All =
        new Dictionary<string, Func<INetBackendUnderTest>>
        {
            ["dpdk-testpmd"] = () => new DpdkTestpmdNetBackend(),
            ["sharpvhost-switch-direct"] = () => new SharpVhostNetBackend("direct"),
            ["sharpvhost-switch-checked"] = () => new SharpVhostNetBackend("checked"),
        };

    public static INetBackendUnderTest Get(string name) => All[name]();

    public static TheoryData<string> Names() => new(All.Keys);
}
