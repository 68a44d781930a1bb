namespace SharpVhost.Integration.Tests.Peers;

/// <summary>A started backend: dispose stops it; its output goes into failure messages.</summary>
public interface IRunningBackend : IAsyncDisposable
{
    /// <summary>What the backend printed so far (stdout and stderr).</summary>
    string Log { get; }
}
