using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Peers;

/// <summary>
/// DPDK testpmd with two net_vhost ports in io forwarding mode: whatever one guest sends comes
/// out at the other, which is all two guests need to ping and talk. No hugepages needed.
/// </summary>
public sealed class DpdkTestpmdNetBackend : INetBackendUnderTest
{
    public string Name => "dpdk-testpmd";

    public async Task<IRunningBackend> StartAsync(NetBackendRequest request)
    {
        if (request.SocketPaths.Count != 2)
            throw new ArgumentException("testpmd's io forwarding pairs exactly two ports");
        var testpmd = Tools.Require("dpdk-testpmd", "dpdk");
        // A per-test prefix keeps DPDK's runtime files (/var/run/dpdk/PREFIX) apart between runs.
        var prefix = "sv" + Path.GetFileName(request.LogDirectory);
        // Two lcores: the main one and one forwarding core that busy-polls; on one CPU, share it.
        var lcores = Environment.ProcessorCount >= 2 ? "0@0,1@1" : "0@0,1@0";
        string[] arguments =
        [
            "--lcores", lcores, "--no-pci", "--no-huge", "-m", "1024", "--file-prefix", prefix,
            "--vdev", $"net_vhost0,iface={request.SocketPaths[0]},queues=1",
            "--vdev", $"net_vhost1,iface={request.SocketPaths[1]},queues=1",
            "--", "--forward-mode=io", "--nb-cores=1", "-a", "--total-num-mbufs=16384",
        ];
        var process = await BackendProcess.StartAsync(
            "testpmd-" + prefix, testpmd, arguments, request.SocketPaths, request.LogDirectory,
            keepStdinOpen: true); // without -i, testpmd runs until a key press or end of stdin
        return new RuntimeDirectoryCleanup(process, Path.Combine("/var/run/dpdk", prefix));
    }

    // Stops testpmd, then removes the runtime directory DPDK leaves behind.
    private sealed class RuntimeDirectoryCleanup(BackendProcess process, string runtimeDirectory) : IRunningBackend
    {
        public string Log => process.Log;

        public async ValueTask DisposeAsync()
        {
            await process.DisposeAsync();
            try { if (Directory.Exists(runtimeDirectory)) Directory.Delete(runtimeDirectory, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
