using SharpVhost.Devices.Block;

namespace SharpVhost.Bench;

/// <summary>A block backend process with our frontend connected to it and request buffers allocated.</summary>
public sealed class RunningBlockBackend : IDisposable
{
    public BlockBackendSpec Spec { get; }
    public PeerProcess Process { get; }
    public BlockClient Client { get; }
    public SharedBuffer[] Buffers { get; }
    public TimeSpan TimeToListen { get; }

    private RunningBlockBackend(BlockBackendSpec spec, PeerProcess process, BlockClient client, SharedBuffer[] buffers, TimeSpan timeToListen)
    {
        Spec = spec;
        Process = process;
        Client = client;
        Buffers = buffers;
        TimeToListen = timeToListen;
    }

    /// <summary>Starts <paramref name="spec"/> pinned to <paramref name="cpu"/>, connects a client with <paramref name="depth"/> buffers of <paramref name="bufferSize"/>.</summary>
    public static RunningBlockBackend Start(BlockBackendSpec spec, int cpu, int depth, int bufferSize)
    {
        var process = spec.Start(cpu);
        try
        {
            var listening = process.WaitForSocket(spec.SocketPath, TimeSpan.FromSeconds(30));
            var client = BlockClient.Connect(spec.SocketPath, new BlockClientOptions
            {
                QueueDepth = depth,
                QueueSize = Math.Max(128, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)depth * 4)),
                BufferBytes = (ulong)depth * (ulong)bufferSize + (1 << 20),
                // The load loops never block in a continuation: run them on the completion thread (no thread-pool hop).
                InlineCompletions = true,
            });
            try
            {
                return new RunningBlockBackend(spec, process, client, BlockLoad.AllocateBuffers(client, depth, bufferSize), listening);
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }
        catch (Exception e) when (e is not IOException and not TimeoutException)
        {
            string tail = process.Tail();
            process.Dispose();
            throw new IOException($"{spec.Name}: {e.Message}\n{tail}", e);
        }
        catch
        {
            process.Dispose();
            throw;
        }
    }

    public BlockLoadResult Run(BlockLoadSpec load)
    {
        if (Process.HasExited) throw new IOException($"{Spec.Name} exited:\n{Process.Tail()}");
        return BlockLoad.Run(Client, Buffers, load);
    }

    public void Dispose()
    {
        try { Client.Dispose(); }
        finally { Process.Dispose(); }
    }
}
