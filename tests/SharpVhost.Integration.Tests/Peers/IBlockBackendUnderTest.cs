namespace SharpVhost.Integration.Tests.Peers;

/// <summary>What a block backend is asked to serve in a guest test.</summary>
/// <param name="SocketPath">Unix socket to listen on (does not exist yet; unique per test).</param>
/// <param name="ImagePath">Raw image file to export read-write (already created and sized).</param>
/// <param name="NumQueues">Virtqueues to offer; QEMU's device is given the same num-queues.</param>
/// <param name="LogDirectory">Where to leave the backend's log.</param>
public sealed record BlockBackendRequest(string SocketPath, string ImagePath, int NumQueues, string LogDirectory);

/// <summary>
/// A vhost-user-blk backend the guest tests run against. Implementations: qemu-storage-daemon
/// (the reference peer) and SharpVhost's own; see <see cref="BlockBackends"/>.
/// </summary>
public interface IBlockBackendUnderTest
{
    /// <summary>Short name shown in test names.</summary>
    string Name { get; }

    /// <summary>
    /// Starts serving <see cref="BlockBackendRequest.ImagePath"/> and returns once the socket
    /// listens. Disposing the result stops the backend; after that, every write the guest
    /// completed must be in the image file.
    /// </summary>
    Task<IRunningBackend> StartAsync(BlockBackendRequest request);
}
