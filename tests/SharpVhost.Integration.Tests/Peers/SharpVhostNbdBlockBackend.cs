namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// Our backend with an NBD disk: `sharpvhost blk --socket-path PATH --nbd URI ...`. The request's image
/// path is not used: the NBD server the test started serves the disk.
/// </summary>
public sealed class SharpVhostNbdBlockBackend(string nbdUri, params string[] extraArguments) : IBlockBackendUnderTest
{
    public string Name => "sharpvhost-nbd";

    public async Task<IRunningBackend> StartAsync(BlockBackendRequest request)
    {
        var (program, prefix) = SharpVhostCli.Command();
        string[] arguments =
        [
            .. prefix, "blk",
            "--socket-path", request.SocketPath,
            "--nbd", nbdUri,
            "--num-queues", request.NumQueues.ToString(),
            .. extraArguments,
        ];
        return await BackendProcess.StartAsync(
            Name + "-" + Path.GetFileName(request.SocketPath), program, arguments, [request.SocketPath], request.LogDirectory);
    }
}
