using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Block;

/// <summary>
/// The executor of one queue's virtio-blk requests over its storage engine. A pass publishes what
/// completed, pops chains into request slots, parses them (<see cref="BlockRequestParser"/>), enqueues
/// their operations (one per request, over all its guest segments, no bounce buffer), submits once,
/// and goes back to the ring; completions arrive later, in any order, and are published on this queue's
/// thread: status byte, used element (dirty pages logged first), the worker then publishes the index
/// and decides the interrupt. A slot holds its chain, and through the worker's pin the memory it points
/// into, from pop until its completion is published. A malformed request is answered with an error
/// status (or, with no room for a status byte, returned with length 0) and counted; a storage error
/// fails that request alone; neither stops the queue.
/// </summary>
internal sealed class BlockRequestProcessor : IQueueProcessor, IDisposable
{
    private const int ECANCELED = 125;
    private readonly IBlockQueueEngine _engine;
    private readonly BlockRequestParser _parser;
    private readonly byte[] _serial;
    private RequestSlot[] _slots = [];
    private int[] _free = [];
    private int _freeCount;
    private int[] _finished = [];   // slots whose operations all completed, to publish
    private int _finishedCount;
    private int[] _waiting = [];    // slots with operations the engine had no room for yet, oldest first
    private int _waitingHead, _waitingCount;
    private readonly BlockCompletion[] _completions = new BlockCompletion[64];
    private IoSegment[] _segments = new IoSegment[64];
    private readonly byte[] _rangeScratch;
    private int _active;
    // The oldest generation an active slot holds, and how many active slots hold exactly that one.
    private long _minGeneration;
    private int _minCount;

    public BlockRequestProcessor(IBlockStorage storage, byte[] serial, BlockDeviceOptions options, int queueSize)
    {
        _parser = new BlockRequestParser(storage.Capacity, storage.ReadOnly, storage.SupportsDiscard, options, storage.SupportsWriteZeroes);
        _serial = serial;
        _rangeScratch = new byte[_parser.MaxRangeBytes];
        _engine = storage.CreateQueueEngine(Math.Max(queueSize, 1));
        EnsureSlots(Math.Max(queueSize, 1));
    }

    /// <summary>Requests popped whose completion is not yet published.</summary>
    public int InFlight => _active;

    /// <summary>The engine's completion eventfd: the worker wakes on it as on a kick (-1 for a synchronous engine).</summary>
    public int WakeFd => _engine.CompletionFd;

    public long PinnedGeneration => _active == 0 ? 0 : _minGeneration;

    /// <summary>Requests answered IOERR because their operation was cancelled (a memory change or a stop waited too long).</summary>
    public long Cancelled { get; private set; }

    private sealed class RequestSlot
    {
        public readonly DescriptorChain Chain = new(16); // grows for longer chains
        public BlockRequest Request;
        public long Generation;
        public int Operations, Started, Done;
        public long Bytes;
        public int Error;      // first negative result, 0 if none
        public bool Active;
        public byte[] Ranges = [];
    }

    /// <summary>A queue bigger than the engine was created for (or a test's) gets slots for every chain it can hold.</summary>
    private void EnsureSlots(int count)
    {
        if (_slots.Length >= count) return;
        int old = _slots.Length;
        Array.Resize(ref _slots, count);
        Array.Resize(ref _free, count);
        Array.Resize(ref _finished, count);
        var waiting = new int[count];
        for (int i = 0; i < _waitingCount; i++) waiting[i] = _waiting[(_waitingHead + i) % _waiting.Length];
        _waiting = waiting;
        _waitingHead = 0;
        for (int i = count - 1; i >= old; i--)
        {
            _slots[i] = new RequestSlot();
            _free[_freeCount++] = i;
        }
    }

    public int Process(IDeviceQueue queue, GuestMemory memory, int budget)
    {
        EnsureSlots(queue.Size);
        Settle(queue);
        int popped = 0;
        while (popped < budget && _waitingCount == 0 && _freeCount > 0)
        {
            if (_engine.InFlight >= _engine.Depth)
            {
                // The engine is full: hand it what we have and take what completed (a synchronous engine's ring).
                _engine.Submit();
                if (Reap() == 0) break;
                Publish(queue);
                continue;
            }
            int index = _free[_freeCount - 1];
            var slot = _slots[index];
            if (!queue.TryPop(slot.Chain)) break;
            _freeCount--;
            popped++;
            Activate(slot, memory.Generation);
            Start(index, slot, queue.Counters);
        }
        Settle(queue);
        return popped;
    }

    public int Complete(IDeviceQueue? queue) => Settle(queue);

    /// <summary>
    /// Submits, takes completions, answers them (or drops them without a queue) and starts what waited for
    /// the room they freed, until nothing more moves; returns how many requests finished. Waiting requests
    /// are never left behind while the engine has room: a synchronous engine has no completion fd to wake
    /// the worker for them, so a guest waiting on such a request would wait forever.
    /// </summary>
    private int Settle(IDeviceQueue? queue)
    {
        int finished = 0;
        do
        {
            _engine.Submit();
            Reap();
            finished += _finishedCount;
            if (queue is not null) Publish(queue);
            else Drop();
        }
        while (StartWaiting());
        return finished;
    }

    public void CancelInFlight(long olderThanGeneration)
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            var slot = _slots[i];
            if (!slot.Active || slot.Generation >= olderThanGeneration) continue;
            // Operations not yet handed to the engine are never started: they fail now.
            if (slot.Started < slot.Operations)
            {
                slot.Error = -ECANCELED;
                slot.Operations = slot.Started;
                if (slot.Done == slot.Operations) Finish(i);
            }
            for (int op = 0; op < slot.Started; op++) _engine.Cancel(Token(i, op));
        }
        _engine.Submit();
    }

    private static ulong Token(int slot, int operation) => (uint)slot | (ulong)operation << 32;

    private void Activate(RequestSlot slot, long generation)
    {
        slot.Active = true;
        slot.Generation = generation;
        slot.Started = slot.Done = slot.Operations = 0;
        slot.Bytes = 0;
        slot.Error = 0;
        if (_active++ == 0 || generation < _minGeneration) { _minGeneration = generation; _minCount = 1; }
        else if (generation == _minGeneration) _minCount++;
    }

    private void Release(int index)
    {
        var slot = _slots[index];
        slot.Active = false;
        _free[_freeCount++] = index;
        _active--;
        if (slot.Generation != _minGeneration || --_minCount > 0 || _active == 0) return;
        // The last request of the oldest generation is done: find the next oldest (rare: generations
        // change with memory, not per request).
        _minGeneration = long.MaxValue;
        foreach (var s in _slots)
        {
            if (!s.Active) continue;
            if (s.Generation < _minGeneration) { _minGeneration = s.Generation; _minCount = 1; }
            else if (s.Generation == _minGeneration) _minCount++;
        }
    }

    /// <summary>Parses a popped chain and starts its operations (or answers it at once).</summary>
    private void Start(int index, RequestSlot slot, QueueCounters counters)
    {
        var request = _parser.Parse(slot.Chain, _rangeScratch);
        slot.Request = request;
        if (request.Kind is BlockRequestKind.Discard or BlockRequestKind.WriteZeroes)
        {
            // The ranges outlive this pass: the slot keeps its own copy (allocated once, on its first such request).
            if (slot.Ranges.Length < _rangeScratch.Length) slot.Ranges = new byte[_rangeScratch.Length];
            _rangeScratch.AsSpan(0, request.Ranges * VirtioBlk.DiscardSegmentSize).CopyTo(slot.Ranges);
        }
        switch (request.Kind)
        {
            case BlockRequestKind.Read:
            case BlockRequestKind.Write:
                int segments = CountDataSegments(slot);
                slot.Operations = segments == 0 ? 0 : (segments + _engine.MaxSegments - 1) / _engine.MaxSegments;
                break;
            case BlockRequestKind.Flush:
                slot.Operations = 1;
                break;
            case BlockRequestKind.Discard:
            case BlockRequestKind.WriteZeroes:
                slot.Operations = request.Ranges;
                break;
            default:
                slot.Operations = 0; // answered without the storage
                break;
        }
        if (slot.Operations == 0) { Finish(index); return; }
        if (!Enqueue(index, slot)) Wait(index);
    }

    /// <summary>Hands the slot's remaining operations to the engine while it has room; false if some are left.</summary>
    private bool Enqueue(int index, RequestSlot slot)
    {
        while (slot.Started < slot.Operations)
        {
            if (_engine.InFlight >= _engine.Depth) return false;
            int op = slot.Started;
            bool taken;
            var r = slot.Request;
            switch (r.Kind)
            {
                case BlockRequestKind.Read:
                case BlockRequestKind.Write:
                {
                    int count = DataSegments(slot, op * _engine.MaxSegments, _engine.MaxSegments, out long offset, out long length);
                    var kind = r.Kind == BlockRequestKind.Read ? BlockOperationKind.Read : BlockOperationKind.Write;
                    taken = _engine.Enqueue(new BlockOperation(kind, r.Offset + offset, length, _segments.AsSpan(0, count), Token(index, op)));
                    break;
                }
                case BlockRequestKind.Flush:
                    taken = _engine.Enqueue(new BlockOperation(BlockOperationKind.Flush, 0, 0, default, Token(index, op)));
                    break;
                default:
                {
                    var (sector, sectors, flags) = BlockRequestParser.ReadRange(slot.Ranges, op);
                    var kind = r.Kind == BlockRequestKind.Discard ? BlockOperationKind.Discard
                        : (flags & VirtioBlk.WriteZeroesUnmap) != 0 ? BlockOperationKind.WriteZeroesUnmap : BlockOperationKind.WriteZeroes;
                    taken = _engine.Enqueue(new BlockOperation(kind, (long)sector * VirtioBlk.SectorSize, (long)sectors * VirtioBlk.SectorSize, default, Token(index, op)));
                    break;
                }
            }
            if (!taken) return false;
            slot.Started++;
        }
        return true;
    }

    private void Wait(int index)
    {
        _waiting[(_waitingHead + _waitingCount) % _waiting.Length] = index;
        _waitingCount++;
    }

    /// <summary>Starts what waited for engine room, oldest first (requests keep their order into the engine); true if it started any operation.</summary>
    private bool StartWaiting()
    {
        bool started = false;
        while (_waitingCount > 0)
        {
            int index = _waiting[_waitingHead];
            var slot = _slots[index];
            int before = slot.Started;
            bool all = !slot.Active || slot.Started >= slot.Operations || Enqueue(index, slot);
            started |= slot.Started > before;
            if (!all) return started;
            _waitingHead = (_waitingHead + 1) % _waiting.Length;
            _waitingCount--;
        }
        return started;
    }

    /// <summary>How many non-empty guest segments a data request moves (header and status byte left out).</summary>
    private static int CountDataSegments(RequestSlot slot)
    {
        int n = 0;
        foreach (var s in EnumerateData(slot)) if (s.Length > 0) n++;
        return n;
    }

    /// <summary>
    /// Fills <see cref="_segments"/> with data segments [first, first + max) of the request; returns how
    /// many, with their byte offset in the request and their total length.
    /// </summary>
    private int DataSegments(RequestSlot slot, int first, int max, out long offset, out long length)
    {
        if (_segments.Length < Math.Min(max, slot.Chain.Count)) Array.Resize(ref _segments, Math.Min(max, slot.Chain.Count));
        int index = 0, count = 0;
        offset = length = 0;
        foreach (var s in EnumerateData(slot))
        {
            if (s.Length == 0) continue;
            if (index++ < first) { offset += s.Length; continue; }
            if (count == max) break;
            _segments[count++] = s;
            length += s.Length;
        }
        return count;
    }

    private static DataSegmentEnumerable EnumerateData(RequestSlot slot) => new(slot.Chain, slot.Request.Kind == BlockRequestKind.Read);

    /// <summary>Moves completions from the engine into their slots; returns how many it took.</summary>
    private int Reap()
    {
        int total = 0, n;
        while ((n = _engine.Reap(_completions)) > 0)
        {
            total += n;
            for (int i = 0; i < n; i++)
            {
                var c = _completions[i];
                int index = (int)(uint)c.Token;
                if ((uint)index >= (uint)_slots.Length) continue; // not ours: an engine bug, never a crash
                var slot = _slots[index];
                if (!slot.Active) continue;
                slot.Done++;
                if (c.Result < 0) { if (slot.Error == 0) slot.Error = c.Result; }
                else slot.Bytes += c.Result;
                if (slot.Done == slot.Operations && slot.Started == slot.Operations) Finish(index);
            }
            if (n < _completions.Length) break;
        }
        return total;
    }

    private void Finish(int index) => _finished[_finishedCount++] = index;

    /// <summary>Writes each finished request's status and adds its used element (the worker publishes the index).</summary>
    private void Publish(IDeviceQueue queue)
    {
        for (int i = 0; i < _finishedCount; i++)
        {
            int index = _finished[i];
            var slot = _slots[index];
            uint written = Answer(slot, queue.Counters);
            queue.AddUsed(slot.Chain, written);
            Release(index);
        }
        _finishedCount = 0;
    }

    /// <summary>The queue cannot be published to (broken, or stopped with its ring out of reach): the slots are freed unanswered.</summary>
    private void Drop()
    {
        for (int i = 0; i < _finishedCount; i++) Release(_finished[i]);
        _finishedCount = 0;
    }

    /// <summary>The status byte (and GET_ID's answer) for a finished request; returns the bytes written into the chain.</summary>
    private uint Answer(RequestSlot slot, QueueCounters counters)
    {
        var chain = slot.Chain;
        var r = slot.Request;
        if (r.Kind == BlockRequestKind.NoStatus) { counters.Errors++; return 0; }
        byte status;
        uint dataIn = 0;
        switch (r.Kind)
        {
            case BlockRequestKind.Refused:
                status = r.Status;
                break;
            case BlockRequestKind.GetId:
                status = VirtioBlk.StatusOk;
                dataIn = GetId(chain);
                break;
            default:
                bool complete = slot.Error == 0 && (r.Kind is not (BlockRequestKind.Read or BlockRequestKind.Write) || slot.Bytes == r.Length);
                status = complete ? VirtioBlk.StatusOk : VirtioBlk.StatusIoError;
                if (slot.Error == -ECANCELED) { Cancelled++; counters.CancelledRequests++; }
                if (complete && r.Kind == BlockRequestKind.Read) dataIn = (uint)r.Length;
                break;
        }
        if (status != VirtioBlk.StatusOk) counters.Errors++;
        chain.GetSpan(chain.Writable[^1])[^1] = status;
        return dataIn + 1;
    }

    private uint GetId(DescriptorChain chain)
    {
        // The id is NUL-padded to 20 bytes when there is room; we write what fits before the status byte.
        Span<byte> id = stackalloc byte[VirtioBlk.GetIdLength];
        id.Clear();
        _serial.CopyTo(id);
        int room = (int)Math.Min(chain.WritableBytes - 1, VirtioBlk.GetIdLength);
        return (uint)chain.CopyToWritable(0, id[..room]);
    }

    public void Dispose() => _engine.Dispose();

    /// <summary>The data segments of a request as engine segments: readable ones past the header (write), writable ones but the status byte (read).</summary>
    private readonly ref struct DataSegmentEnumerable(DescriptorChain chain, bool read)
    {
        public Enumerator GetEnumerator() => new(chain, read);

        public ref struct Enumerator(DescriptorChain chain, bool read)
        {
            private readonly ReadOnlySpan<BufferSegment> _segments = read ? chain.Writable : chain.Readable;
            private int _index = -1;
            private int _skip = read ? 0 : VirtioBlk.HeaderSize;

            public IoSegment Current { get; private set; }

            public bool MoveNext()
            {
                while (++_index < _segments.Length)
                {
                    var s = _segments[_index];
                    int length = (int)s.Length;
                    nint host = s.Host;
                    if (_skip > 0)
                    {
                        int cut = Math.Min(_skip, length);
                        _skip -= cut;
                        host += cut;
                        length -= cut;
                    }
                    if (read && _index == _segments.Length - 1) length--; // the status byte
                    if (length < 0) length = 0;
                    Current = new IoSegment(host, length);
                    return true;
                }
                return false;
            }
        }
    }
}
