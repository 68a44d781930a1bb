namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// Our backend: `sharpvhost blk --socket-path PATH --blk-file FILE --num-queues N --metadata M`.
/// </summary>
public sealed class SharpVhostBlockBackend(string metadata, params string[] extraArguments) : IBlockBackendUnderTest
{
    public string Name => "sharpvhost-" + metadata;

    public async Task<IRunningBackend> StartAsync(BlockBackendRequest request)
    {
        var (program, prefix) = SharpVhostCli.Command();
        string[] arguments =
        [
            .. prefix, "blk",
            "--socket-path", request.SocketPath,
            "--blk-file", request.ImagePath,
            "--num-queues", request.NumQueues.ToString(),
            "--metadata", metadata,
            .. extraArguments,
        ];
        return await BackendProcess.StartAsync(
            Name + "-" + Path.GetFileName(request.SocketPath), program, arguments, [request.SocketPath], request.LogDirectory);
    }
}
