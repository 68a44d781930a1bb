using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// qemu-storage-daemon exporting a raw file as vhost-user-blk: the reference backend. With
/// <paramref name="nullDevice"/> it exports a null-co disk instead (reads zeros, drops writes;
/// for benchmarks) sized like the request's image file.
/// </summary>
public sealed class QemuStorageDaemonBlockBackend(bool nullDevice = false) : IBlockBackendUnderTest
{
    public string Name => nullDevice ? "qemu-storage-daemon-null" : "qemu-storage-daemon";

    public async Task<IRunningBackend> StartAsync(BlockBackendRequest request)
    {
        var daemon = Tools.Require("qemu-storage-daemon", "qemu-system-x86");
        var blockdev = nullDevice
            ? $"driver=null-co,node-name=disk0,size={(File.Exists(request.ImagePath) ? new FileInfo(request.ImagePath).Length : 1L << 30)}"
            : $"driver=file,node-name=disk0,filename={request.ImagePath}";
        // The export's num-queues must equal the device's, or QEMU refuses the backend.
        string[] arguments =
        [
            "--blockdev", blockdev,
            "--export",
            $"type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path={request.SocketPath}," +
            $"writable=on,num-queues={request.NumQueues}",
        ];
        return await BackendProcess.StartAsync(
            Name + "-" + Path.GetFileName(request.SocketPath), daemon, arguments, [request.SocketPath], request.LogDirectory);
    }
}
