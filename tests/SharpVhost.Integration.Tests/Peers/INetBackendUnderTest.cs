namespace SharpVhost.Integration.Tests.Peers;

/// <summary>What a net backend is asked to serve: one vhost-user-net port per socket.</summary>
/// <param name="SocketPaths">Unix sockets to listen on, one per guest (unique per test).</param>
/// <param name="LogDirectory">Where to leave the backend's log.</param>
public sealed record NetBackendRequest(IReadOnlyList<string> SocketPaths, string LogDirectory);

/// <summary>
/// A vhost-user-net backend that joins its ports at layer 2, so the guests on them reach each
/// other. Implementations: DPDK testpmd forwarding between two ports (the reference peer) and
/// SharpVhost's switch; see <see cref="NetBackends"/>.
/// </summary>
public interface INetBackendUnderTest
{
    string Name { get; }

    /// <summary>Starts the backend; returns once every socket listens. Dispose stops it.</summary>
    Task<IRunningBackend> StartAsync(NetBackendRequest request);
}
