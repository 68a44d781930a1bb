using Microsoft.Extensions.Logging;
using SharpVhost.Interop;

namespace SharpVhost.Devices.Block.Nbd;

/// <summary>
/// A disk on an NBD server (qemu-nbd, nbdkit, or any store behind one). The size, the read-only bit, the
/// block size and which of flush, trim and write-zeroes exist come from the server. Each queue gets its
/// own connection (<see cref="CreateQueueEngine"/>); the synchronous calls share one connection under a lock
/// (the path the block device takes until it drives engines itself).
/// </summary>
public sealed class NbdStorage : IBlockStorage
{
    private readonly NbdConnector _connector;
    private readonly NbdQueueEngine _sync;
    private readonly Lock _syncLock = new();
    private readonly NativeBuffer _zeroes;
    private readonly BlockCompletion[] _one = new BlockCompletion[1];
    private int _engines;

    public NbdExport Export { get; }
    public long Capacity => Export.Size;
    public bool ReadOnly => Export.ReadOnly;
    public bool SupportsDiscard => !ReadOnly && Export.CanTrim;
    public bool SupportsWriteZeroes => !ReadOnly && Export.CanWriteZeroes;
    /// <summary>The server's minimum block size, at least a sector: the guest's logical block size.</summary>
    public int BlockSize => (int)Math.Max(512, Export.MinimumBlockSize);
    public string Description => $"NBD {_connector.Uri} ({Export.Describe()})";

    /// <summary>Connects (IOException when the server cannot be reached or refuses the export).</summary>
    public NbdStorage(NbdUri uri, NbdClientOptions options, ILogger logger)
    {
        _connector = new NbdConnector(uri, options, logger);
        _sync = new NbdQueueEngine(_connector, depth: 1, name: "nbd sync");
        Export = _sync.Export;
        _zeroes = new NativeBuffer((int)Math.Min(Export.MaximumPayload, 1 << 20));
    }

    /// <summary>
    /// A queue's engine: a connection of its own with up to <paramref name="depth"/> requests in flight.
    /// Without NBD_FLAG_CAN_MULTI_CONN a flush on one connection need not cover writes completed on another,
    /// so such an export should be served with one queue (the log says so).
    /// </summary>
    public IBlockQueueEngine CreateQueueEngine(int depth)
    {
        if (!Export.CanMultiConn && Interlocked.Increment(ref _engines) == 2)
            _connector.Logger.LogWarning("nbd {Uri}: the export does not advertise multi-conn: a flush on one queue's connection may not cover " +
                "writes completed on another's; serve it with --num-queues 1, or export it with multi-conn (qemu-nbd -e N, nbdkit)", _connector.Uri);
        return new NbdQueueEngine(_connector, depth, name: "nbd queue");
    }

    public void Read(Span<byte> destination, long offset)
    {
        for (int done = 0; done < destination.Length;)
        {
            int n = (int)Math.Min(destination.Length - done, Export.MaximumPayload);
            Run(BlockOperationKind.Read, offset + done, n, NativeBuffer.AddressOf(destination[done..]));
            done += n;
        }
    }

    public void Write(ReadOnlySpan<byte> source, long offset)
    {
        for (int done = 0; done < source.Length;)
        {
            int n = (int)Math.Min(source.Length - done, Export.MaximumPayload);
            Run(BlockOperationKind.Write, offset + done, n, NativeBuffer.AddressOf(source[done..]));
            done += n;
        }
    }

    public void Flush() => Run(BlockOperationKind.Flush, 0, 0, 0);

    public void Discard(long offset, long length)
    {
        // TRIM is advisory: an export without it keeps the data, which a discard allows.
        if (Export.CanTrim) Ranges(BlockOperationKind.Discard, offset, length);
    }

    public void WriteZeroes(long offset, long length, bool unmap)
    {
        if (Export.CanWriteZeroes)
        {
            Ranges(unmap ? BlockOperationKind.WriteZeroesUnmap : BlockOperationKind.WriteZeroes, offset, length);
            return;
        }
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(length - done, _zeroes.Length);
            Run(BlockOperationKind.Write, offset + done, n, _zeroes.Address);
            done += n;
        }
    }

    private void Ranges(BlockOperationKind kind, long offset, long length)
    {
        const long chunk = 1L << 30; // NBD lengths are 32-bit
        for (long done = 0; done < length; done += chunk) Run(kind, offset + done, Math.Min(chunk, length - done), 0);
    }

    private void Run(BlockOperationKind kind, long offset, long length, nint address)
    {
        lock (_syncLock)
        {
            ReadOnlySpan<IoSegment> segments = address == 0 ? [] : [new IoSegment(address, (int)length)];
            if (!_sync.Enqueue(new BlockOperation(kind, offset, length, segments, token: 1)))
                throw new IOException("nbd: the synchronous engine is busy");
            _sync.Submit();
            while (_sync.Reap(_one) == 0) EventFd.WaitAny([_sync.CompletionFd], -1);
            if (_one[0].Result < 0) throw new IOException($"nbd {kind} at {offset} (+{length}): {StreamSocketIo.Describe(-_one[0].Result)}", -_one[0].Result);
        }
    }

    public void Dispose()
    {
        _sync.Dispose();
        _zeroes.Dispose();
    }
}
