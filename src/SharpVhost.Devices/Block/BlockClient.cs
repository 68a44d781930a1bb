using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Logging;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Block;

/// <summary>A buffer in the memory shared with the backend: I/O on it moves no bytes through this process.</summary>
public readonly struct SharedBuffer(SharedMemory memory, ulong guestAddress, int length)
{
    public ulong GuestAddress { get; } = guestAddress;
    public int Length { get; } = length;
    public Span<byte> Span => memory.GetSpan(GuestAddress, Length);
    public SharedBuffer Slice(int start, int length) => new(memory, GuestAddress + (ulong)start, length);
}

public sealed record BlockClientOptions
{
    public int NumQueues { get; init; } = 1;
    public int QueueSize { get; init; } = 128;
    /// <summary>Requests in flight per queue at most.</summary>
    public int QueueDepth { get; init; } = 32;
    /// <summary>Shared memory for the caller's data buffers.</summary>
    public ulong BufferBytes { get; init; } = 64 << 20;
    /// <summary>
    /// Run the continuations of completed requests directly on the queue's completion thread instead of
    /// handing them to the thread pool: one thread wake-up less per completion (lower latency, fewer
    /// context switches). Only for callers whose continuations never block: a continuation that waits
    /// synchronously for another request would stall every completion of its queue.
    /// </summary>
    public bool InlineCompletions { get; init; }
    /// <summary>Ask for VIRTIO_F_RING_PACKED; the rings are packed if the backend offers it.</summary>
    public bool PackedRing { get; init; }
    /// <summary>
    /// Put the device behind a virtual IOMMU (ACCESS_PLATFORM): the backend translates every address
    /// through IOTLB entries it asks for. The client maps all its memory (IOVA = guest-physical) in
    /// <see cref="IommuMappingBytes"/> pieces; <see cref="BlockClient.Iommu"/> can unmap and remap them.
    /// </summary>
    public bool Iommu { get; init; }
    public ulong IommuMappingBytes { get; init; } = 64 << 10;
}

/// <summary>
/// A virtio-blk driver over vhost-user: talks to any vhost-user-blk backend (ours or
/// qemu-storage-daemon) the way libblkio does. Thread-safe; requests on one queue complete out of
/// order as the backend returns them. The backend is not trusted: bad used entries fail the request.
/// </summary>
public sealed class BlockClient : IDisposable
{
    private readonly FrontendSession _session;
    private readonly ClientQueue[] _queues;
    private int _nextQueue;

    public long Capacity { get; }
    public uint BlockSize { get; }
    public ulong Features => _session.Features;
    public SharedMemory Memory { get; }
    /// <summary>The virtual IOMMU, when <see cref="BlockClientOptions.Iommu"/> was asked for.</summary>
    public FrontendIommu? Iommu => _session.Iommu;
    public int NumQueues => _queues.Length;

    private BlockClient(FrontendSession session, BlockClientOptions options)
    {
        _session = session;
        ulong wanted = VirtioFeatureBits.Bit(VirtioFeatureBits.Version1) | VirtioFeatureBits.Bit(VirtioFeatureBits.RingEventIdx)
            | VirtioFeatureBits.Bit(VirtioFeatureBits.RingIndirectDesc) | (1ul << VirtioBlk.FeatureFlush) | (1ul << VirtioBlk.FeatureBlockSize)
            | (1ul << VirtioBlk.FeatureSegMax) | (1ul << VirtioBlk.FeatureMultiQueue) | (1ul << VirtioBlk.FeatureDiscard)
            | (1ul << VirtioBlk.FeatureWriteZeroes) | (1ul << VirtioBlk.FeatureReadOnly)
            | (options.PackedRing ? VirtioFeatureBits.Bit(VirtioFeatureBits.RingPacked) : 0);
        session.NegotiateFeatures(wanted);
        var config = session.GetConfig(0, BlockConfig.Size);
        Capacity = (long)BinaryPrimitives.ReadUInt64LittleEndian(config) * VirtioBlk.SectorSize;
        uint blockSize = BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(20));
        BlockSize = VirtioFeatureBits.Has(session.Features, VirtioBlk.FeatureBlockSize) && blockSize != 0 ? blockSize : VirtioBlk.SectorSize;
        int queues = Math.Min(options.NumQueues, session.MaxQueues);
        ulong perQueue = (ulong)options.QueueDepth * ClientQueue.SlotBytes + SplitRingPlacement.At(0, options.QueueSize).End + 8192;
        Memory = session.ShareMemory(options.BufferBytes + (ulong)queues * perQueue);
        if (session.Iommu is { } iommu)
            for (ulong at = 0; at < Memory.Size; at += options.IommuMappingBytes)
                iommu.Map(at, Math.Min(options.IommuMappingBytes, Memory.Size - at), Memory.ToFrontendVirtual(at), IotlbPermission.ReadWrite);
        _queues = new ClientQueue[queues];
        for (int i = 0; i < queues; i++)
            _queues[i] = new ClientQueue(session.StartQueue(i, options.QueueSize), Memory, Math.Min(options.QueueDepth, options.QueueSize),
                VirtioFeatureBits.Has(session.Features, VirtioFeatureBits.RingIndirectDesc), options.InlineCompletions);
    }

    public static BlockClient Connect(string socketPath, BlockClientOptions? options = null, ILogger? logger = null)
    {
        var session = FrontendSession.Connect(socketPath, logger, iommu: options?.Iommu ?? false);
        try { return new BlockClient(session, options ?? new BlockClientOptions()); }
        catch { session.Dispose(); throw; }
    }

    /// <summary>A buffer in shared memory, aligned for O_DIRECT on the backend's side.</summary>
    public SharedBuffer AllocateBuffer(int length) => new(Memory, Memory.Allocate((ulong)length, 4096), length);

    private ClientQueue NextQueue() => _queues[(int)((uint)Interlocked.Increment(ref _nextQueue) % (uint)_queues.Length)];

    public Task ReadAsync(long offset, SharedBuffer buffer) => NextQueue().Submit(VirtioBlk.TypeIn, Sector(offset), buffer, deviceWrites: true);

    public Task WriteAsync(long offset, SharedBuffer buffer) => NextQueue().Submit(VirtioBlk.TypeOut, Sector(offset), buffer, deviceWrites: false);

    public Task FlushAsync() => NextQueue().Submit(VirtioBlk.TypeFlush, 0, default, deviceWrites: false);

    public Task DiscardAsync(long offset, long length) => NextQueue().SubmitSegment(VirtioBlk.TypeDiscard, Sector(offset), Sectors(length), 0);

    public Task WriteZeroesAsync(long offset, long length, bool unmap = false)
        => NextQueue().SubmitSegment(VirtioBlk.TypeWriteZeroes, Sector(offset), Sectors(length), unmap ? VirtioBlk.WriteZeroesUnmap : 0);

    public async Task<string> GetIdAsync()
    {
        var buffer = _queues[0].IdBuffer;
        await _queues[0].Submit(VirtioBlk.TypeGetId, 0, buffer, deviceWrites: true);
        var bytes = buffer.Span;
        int end = bytes.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? bytes : bytes[..end]);
    }

    private static ulong Sector(long offset) => offset % VirtioBlk.SectorSize == 0 && offset >= 0 ? (ulong)offset / VirtioBlk.SectorSize
        : throw new ArgumentException("offsets are whole sectors", nameof(offset));

    private static uint Sectors(long length) => length % VirtioBlk.SectorSize == 0 && length >= 0 && length / VirtioBlk.SectorSize <= uint.MaxValue
        ? (uint)(length / VirtioBlk.SectorSize) : throw new ArgumentException("lengths are whole sectors", nameof(length));

    public void Dispose()
    {
        foreach (var q in _queues) q.Dispose();
        _session.Dispose();
    }

    /// <summary>One queue: request slots (header, status, segment in shared memory), submission and a completion thread.</summary>
    private sealed class ClientQueue : IDisposable
    {
        public const int SlotBytes = 128; // header 0..16, status 16, discard segment 32..48, indirect table 64..128
        private const int MaxDescriptorsPerRequest = 4;
        private readonly FrontendQueue _queue;
        private readonly SharedMemory _memory;
        private readonly ulong _slotBase;
        private readonly Stack<int> _freeSlots = new();
        private readonly TaskCompletionSource[] _pending;
        private readonly int[] _slotOfHead;
        private readonly SemaphoreSlim _depth;
        private readonly object _lock = new();
        private readonly Thread _completer;
        private volatile bool _stopping;
        public SharedBuffer IdBuffer { get; }

        private readonly bool _indirect;

        private readonly TaskCreationOptions _completionOptions;

        public ClientQueue(FrontendQueue queue, SharedMemory memory, int depth, bool indirect, bool inlineCompletions)
        {
            _indirect = indirect;
            _completionOptions = inlineCompletions ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously;
            // Without indirect tables a request takes up to four ring descriptors.
            if (!indirect) depth = Math.Max(1, Math.Min(depth, queue.Ring.Size / MaxDescriptorsPerRequest));
            _queue = queue;
            _memory = memory;
            _slotBase = memory.Allocate((ulong)(depth * SlotBytes), 64);
            IdBuffer = new SharedBuffer(memory, memory.Allocate(VirtioBlk.GetIdLength, 64), VirtioBlk.GetIdLength);
            for (int i = depth - 1; i >= 0; i--) _freeSlots.Push(i);
            _pending = new TaskCompletionSource[depth];
            _slotOfHead = new int[queue.Ring.Size];
            _depth = new SemaphoreSlim(depth, depth);
            _completer = new Thread(CompleteLoop) { IsBackground = true, Name = $"blk-client-q{queue.Index}" };
            _completer.Start();
        }

        public Task Submit(uint type, ulong sector, SharedBuffer data, bool deviceWrites) => SubmitCore(type, sector, data, deviceWrites, null);

        public Task SubmitSegment(uint type, ulong sector, uint sectors, uint flags) => SubmitCore(type, 0, default, false, (sector, sectors, flags));

        private async Task SubmitCore(uint type, ulong sector, SharedBuffer data, bool deviceWrites, (ulong Sector, uint Count, uint Flags)? segment)
        {
            await _depth.WaitAsync().ConfigureAwait(false);
            var completion = new TaskCompletionSource(_completionOptions);
            int slot;
            lock (_lock)
            {
                slot = _freeSlots.Pop();
                ulong header = _slotBase + (ulong)(slot * SlotBytes);
                var h = _memory.GetSpan(header, SlotBytes);
                BinaryPrimitives.WriteUInt32LittleEndian(h, type);
                BinaryPrimitives.WriteUInt32LittleEndian(h[4..], 0);
                BinaryPrimitives.WriteUInt64LittleEndian(h[8..], sector);
                h[16] = 0xff; // status: overwritten by the device
                Span<DriverBuffer> buffers = stackalloc DriverBuffer[3];
                int n = 0;
                buffers[n++] = new DriverBuffer(header, VirtioBlk.HeaderSize, false);
                if (segment is { } s)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(h[32..], s.Sector);
                    BinaryPrimitives.WriteUInt32LittleEndian(h[40..], s.Count);
                    BinaryPrimitives.WriteUInt32LittleEndian(h[44..], s.Flags);
                    buffers[n++] = new DriverBuffer(header + 32, VirtioBlk.DiscardSegmentSize, false);
                }
                if (data.Length > 0) buffers[n++] = new DriverBuffer(data.GuestAddress, (uint)data.Length, deviceWrites);
                buffers[n++] = new DriverBuffer(header + 16, 1, true);
                bool added = _indirect
                    ? _queue.Ring.TryAddIndirect(_memory.Memory, header + 64, buffers[..n], out ushort head)
                    : _queue.Ring.TryAdd(buffers[..n], out head);
                if (!added) throw new InvalidOperationException("ring full despite the depth limit");
                _slotOfHead[head] = slot;
                _pending[slot] = completion;
                _queue.Publish();
            }
            try
            {
                await completion.Task.ConfigureAwait(false);
            }
            finally
            {
                _depth.Release();
            }
        }

        private void CompleteLoop()
        {
            Span<int> fds = [_queue.Call.Fd];
            while (!_stopping)
            {
                if (EventFd.WaitAny(fds, 100) < 0) continue;
                _queue.Call.TryConsume();
                // _stopping is re-checked before touching the ring: an inline continuation may have disposed the client.
                do { Reap(); } while (!_stopping && _queue.Ring.EnableInterrupts());
            }
        }

        private void Reap()
        {
            while (!_stopping)
            {
                TaskCompletionSource completion;
                byte status;
                List<TaskCompletionSource>? broken = null;
                string? error = null;
                lock (_lock)
                {
                    ushort head = 0;
                    bool got = false;
                    try
                    {
                        got = _queue.Ring.TryGetUsed(out head, out _);
                    }
                    catch (VirtqueueException e)
                    {
                        broken = TakeAllPending();
                        error = "backend broke the ring: " + e.Message;
                    }
                    if (!got)
                    {
                        completion = null!;
                        status = 0;
                    }
                    else
                    {
                        int slot = _slotOfHead[head];
                        completion = _pending[slot];
                        _pending[slot] = null!;
                        status = _memory.GetSpan(_slotBase + (ulong)(slot * SlotBytes) + 16, 1)[0];
                        _freeSlots.Push(slot);
                    }
                }
                // Requests are completed outside the lock: with inline completions their continuations run
                // right here, and may submit again.
                if (broken is not null)
                {
                    Fail(broken, new IOException(error));
                    return;
                }
                if (completion is null) return;
                if (status == VirtioBlk.StatusOk) completion.TrySetResult();
                else completion.TrySetException(new IOException(status == VirtioBlk.StatusUnsupported ? "request not supported by the device" : $"device reported I/O error (status {status})"));
            }
        }

        /// <summary>Takes every pending request out of the table (under the lock); the caller fails them after releasing it.</summary>
        private List<TaskCompletionSource> TakeAllPending()
        {
            var taken = new List<TaskCompletionSource>();
            for (int i = 0; i < _pending.Length; i++)
            {
                if (_pending[i] is { } p) taken.Add(p);
                _pending[i] = null!;
            }
            return taken;
        }

        private static void Fail(List<TaskCompletionSource> requests, Exception e)
        {
            foreach (var r in requests) r.TrySetException(e);
        }

        public void Dispose()
        {
            _stopping = true;
            if (Thread.CurrentThread != _completer) _completer.Join(); // a continuation running inline on the completer may dispose
            List<TaskCompletionSource> failed;
            lock (_lock) failed = TakeAllPending();
            Fail(failed, new ObjectDisposedException(nameof(BlockClient)));
        }
    }
}
