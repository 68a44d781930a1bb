using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>
/// An engine over a storage's synchronous calls: every operation runs and completes inside
/// <see cref="Enqueue"/>, on the queue's thread, and waits in a fixed ring until reaped. The fast path of
/// RAM and null storage (no eventfd, no system call, no allocation per operation).
/// </summary>
public sealed class SynchronousQueueEngine : IBlockQueueEngine
{
    private const int EIO = 5;
    private readonly IBlockStorage _storage;
    private readonly BlockCompletion[] _done;
    private int _head;
    private int _count;

    public SynchronousQueueEngine(IBlockStorage storage, int depth, int maxSegments = 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(depth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSegments);
        _storage = storage;
        _done = new BlockCompletion[depth];
        MaxSegments = maxSegments;
    }

    public int CompletionFd => -1;
    public int Depth => _done.Length;
    /// <summary>IOV_MAX by default, as a file engine would take: a request is checked the same way whatever the storage.</summary>
    public int MaxSegments { get; }
    public int InFlight => _count;

    public bool Enqueue(in BlockOperation operation)
    {
        if (_count == _done.Length) return false;
        int result;
        try
        {
            result = Execute(operation);
        }
        catch (IOException)
        {
            result = -EIO;
        }
        _done[(_head + _count) % _done.Length] = new BlockCompletion(operation.Token, result);
        _count++;
        return true;
    }

    private int Execute(in BlockOperation op)
    {
        long offset = op.Offset;
        switch (op.Kind)
        {
            case BlockOperationKind.Read:
                foreach (var s in op.Segments)
                {
                    _storage.Read(HostMemory.AsSpan(s.Address, s.Length), offset);
                    offset += s.Length;
                }
                return (int)Math.Min(op.Length, int.MaxValue);
            case BlockOperationKind.Write:
                foreach (var s in op.Segments)
                {
                    _storage.Write(HostMemory.AsSpan(s.Address, s.Length), offset);
                    offset += s.Length;
                }
                if (op.Fua) _storage.Flush();
                return (int)Math.Min(op.Length, int.MaxValue);
            case BlockOperationKind.Flush:
                _storage.Flush();
                return 0;
            case BlockOperationKind.Discard:
                _storage.Discard(op.Offset, op.Length);
                return 0;
            case BlockOperationKind.WriteZeroes:
            case BlockOperationKind.WriteZeroesUnmap:
                _storage.WriteZeroes(op.Offset, op.Length, op.Kind == BlockOperationKind.WriteZeroesUnmap);
                return 0;
            default:
                return -EIO;
        }
    }

    public void Submit() { }

    public int Reap(Span<BlockCompletion> into)
    {
        int n = Math.Min(into.Length, _count);
        for (int i = 0; i < n; i++)
        {
            into[i] = _done[_head];
            _head = (_head + 1) % _done.Length;
        }
        _count -= n;
        return n;
    }

    /// <summary>Nothing to cancel: an operation has completed by the time anyone could ask.</summary>
    public void Cancel(ulong token) { }

    public void Dispose() { }
}
