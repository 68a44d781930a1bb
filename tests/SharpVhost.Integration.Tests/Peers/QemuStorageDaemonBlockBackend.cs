using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Peers;

/// <summary>qemu-storage-daemon exporting a raw file as vhost-user-blk: the reference backend.</summary>
public sealed class QemuStorageDaemonBlockBackend : IBlockBackendUnderTest
{
    public string Name => "qemu-storage-daemon";

    public async Task<IAsyncDisposable> StartAsync(BlockBackendRequest request)
    {
        var daemon = Tools.Require("qemu-storage-daemon", "qemu-system-x86");
        // The export's num-queues must equal the device's, or QEMU refuses the backend.
        string[] arguments =
        [
            "--blockdev", $"driver=file,node-name=disk0,filename={request.ImagePath}",
            "--export",
            $"type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path={request.SocketPath}," +
            $"writable=on,num-queues={request.NumQueues}",
        ];
        return await BackendProcess.StartAsync(
            "qemu-storage-daemon-" + Path.GetFileName(request.SocketPath), daemon, arguments,
            [request.SocketPath], request.LogDirectory);
    }
}
