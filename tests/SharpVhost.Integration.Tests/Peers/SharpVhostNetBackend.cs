namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// Our switch: `sharpvhost net --socket-path A --socket-path B --switch [--metadata M]`.
/// In <see cref="NetBackends.All"/> with both metadata accessors.
/// </summary>
public sealed class SharpVhostNetBackend(string metadata) : INetBackendUnderTest
{
    public string Name => "sharpvhost-switch-" + metadata;

    public async Task<IRunningBackend> StartAsync(NetBackendRequest request)
    {
        var (program, prefix) = SharpVhostCli.Command();
        var arguments = prefix.Append("net")
            .Concat(request.SocketPaths.SelectMany(path => new[] { "--socket-path", path }))
            .Concat(["--switch", "--metadata", metadata]);
        return await BackendProcess.StartAsync(
            Name + "-" + Path.GetFileName(request.LogDirectory), program, arguments, request.SocketPaths, request.LogDirectory);
    }
}
