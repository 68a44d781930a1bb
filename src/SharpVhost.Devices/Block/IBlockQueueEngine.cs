namespace SharpVhost.Devices.Block;

/// <summary>One piece of guest memory an operation reads into or writes from: an address in our mapping of guest memory.</summary>
public readonly record struct IoSegment(nint Address, int Length);

public enum BlockOperationKind : byte
{
    Read,
    Write,
    /// <summary>Every write that completed before this was enqueued is durable when it completes (fdatasync).</summary>
    Flush,
    Discard,
    WriteZeroes,
    /// <summary>WRITE_ZEROES that may deallocate (virtio-blk's UNMAP flag).</summary>
    WriteZeroesUnmap,
}

/// <summary>
/// One storage operation of one request. Read and Write cover all of <see cref="Segments"/> (in order, from
/// <see cref="Offset"/>); Discard and the zeroing kinds cover <see cref="Length"/> bytes and have no segments.
/// The engine copies what it needs (the segment list) before <see cref="IBlockQueueEngine.Enqueue"/> returns;
/// the memory the segments point at must stay mapped until the operation's completion is reaped.
/// </summary>
public readonly ref struct BlockOperation(BlockOperationKind kind, long offset, long length, ReadOnlySpan<IoSegment> segments, ulong token, bool fua = false)
{
    public BlockOperationKind Kind { get; } = kind;
    public long Offset { get; } = offset;
    /// <summary>Bytes covered: the segments' total for Read and Write, the range for Discard and WriteZeroes, 0 for Flush.</summary>
    public long Length { get; } = length;
    public ReadOnlySpan<IoSegment> Segments { get; } = segments;
    /// <summary>The caller's name for the operation, returned in its completion.</summary>
    public ulong Token { get; } = token;
    /// <summary>Forced unit access: the write is durable when it completes.</summary>
    public bool Fua { get; } = fua;
}

/// <summary>An operation finished: <see cref="Result"/> is the bytes moved (or 0) on success, a negative errno on failure.</summary>
public readonly record struct BlockCompletion(ulong Token, int Result)
{
    public bool Succeeded => Result >= 0;
}

/// <summary>
/// One queue's asynchronous submission context on a storage (an io_uring, a thread pool's queue, an NBD
/// connection's share, or a synchronous engine that completes in <see cref="Enqueue"/>). Used only by that
/// queue's thread: enqueue a pass's operations, submit once, and reap completions when
/// <see cref="CompletionFd"/> is readable. Completions come in any order. No allocation per operation.
/// </summary>
public interface IBlockQueueEngine : IDisposable
{
    /// <summary>
    /// Readable (an eventfd) when completions are waiting; the queue's thread polls it beside its kick.
    /// -1 for a synchronous engine: every operation has completed when <see cref="Enqueue"/> returns.
    /// </summary>
    int CompletionFd { get; }

    /// <summary>How many operations may be in flight at once; <see cref="Enqueue"/> refuses more.</summary>
    int Depth { get; }

    /// <summary>The most segments one operation may have (IOV_MAX for files); the caller splits or refuses longer requests.</summary>
    int MaxSegments { get; }

    /// <summary>Operations enqueued and not yet reaped.</summary>
    int InFlight { get; }

    /// <summary>Queues an operation. False when <see cref="Depth"/> operations are in flight (reap first); never throws for a storage error (that is a completion).</summary>
    bool Enqueue(in BlockOperation operation);

    /// <summary>Hands everything enqueued since the last call to the kernel (one system call per pass).</summary>
    void Submit();

    /// <summary>Takes up to <paramref name="into"/>.Length completions and clears <see cref="CompletionFd"/>'s readiness when it takes the last one.</summary>
    int Reap(Span<BlockCompletion> into);

    /// <summary>
    /// Asks for an operation in flight to end soon (io_uring's ASYNC_CANCEL). It still completes through
    /// <see cref="Reap"/>, with -ECANCELED or its real result; a no-op for an operation already complete.
    /// </summary>
    void Cancel(ulong token);
}
