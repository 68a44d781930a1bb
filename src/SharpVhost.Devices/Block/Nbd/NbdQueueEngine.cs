using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpVhost.Interop;

namespace SharpVhost.Devices.Block.Nbd;

/// <summary>
/// One queue's NBD connection: up to <see cref="Depth"/> requests in flight on it, sent by the queue's
/// thread in one scatter-gather sendmsg per <see cref="Submit"/> (headers and the guest's write buffers
/// side by side), answered by the server in any order and matched by cookie. A receive thread per
/// connection reads each reply straight into the guest buffers of its request (recvmsg over their
/// iovecs) and signals <see cref="CompletionFd"/>; the queue's thread reaps. A blocking receive thread
/// rather than a second poll source on the queue's thread: a reply's payload can then be read to its end
/// without the queue worker stopping halfway for its ring, and the queue's thread never waits on the
/// network. Slots, headers and iovec arrays are allocated once.
/// <para>
/// Failure: a lost connection either fails the requests it carried with EIO at once or, with
/// <see cref="NbdClientOptions.ReconnectDelay"/>, keeps them for that long while the receive thread
/// reconnects, then sends them again. A server that breaks the protocol (a reply for a handle never sent,
/// a chunk outside its request, an oversized or malformed reply, silence past
/// <see cref="NbdClientOptions.ReplyTimeout"/>) has its connection dropped with a log line saying why,
/// and every request on it fails with EIO (never retried: a confused server may have done anything).
/// Nothing here throws into the queue's thread and nothing ends the process.
/// </para>
/// </summary>
public sealed class NbdQueueEngine : IBlockQueueEngine
{
    private const int Free = 0, Queued = 1, Sent = 2, Completed = 3;
    private const int MaxErrorChunk = 4 + 2 + NbdProtocol.MaxString + 8;

    private sealed class Slot(int index, int maxSegments)
    {
        public readonly int Index = index;
        public uint Generation;
        public int State;
        public ushort Command, Flags;
        public long Offset;
        public uint Length;
        public readonly IoSlice[] Segments = new IoSlice[maxSegments];
        public int SegmentCount;
        public ulong Token;
        public int Result, Error;
        public long Covered;
        public long Deadline;
        public ulong Cookie => ((ulong)Generation << 32) | (uint)Index;
    }

    private readonly NbdConnector _connector;
    private readonly ILogger _log;
    private readonly NbdClientOptions _options;
    private readonly Slot[] _slots;
    private readonly Stack<Slot> _free;          // the queue's thread only
    private readonly Queue<Slot> _toSend;        // under _lock
    private readonly Queue<Slot> _completed;     // under _lock
    private readonly Lock _lock = new();
    private readonly Lock _sendLock = new();
    private readonly EventFd _completionFd = EventFd.Create(nonBlocking: true);
    private readonly NativeBuffer _headers;      // a request header per slot
    private readonly NativeBuffer _sendVectors;
    private readonly NativeBuffer _receiveBuffer; // reply headers and error messages
    private readonly NativeBuffer _receiveVectors;
    private readonly Thread _receiver;
    private readonly ManualResetEventSlim _stopping = new();
    private readonly List<Slot> _batch;
    private Socket? _socket;                     // under _lock; null while disconnected
    private int _epoch;
    private string? _dropReason;                 // under _lock: why another thread asked for a drop
    private bool _dropProtocol;                          // bumped (under _lock) when a connection is dropped
    private long _lastProgress;
    private int _inFlight;
    private volatile bool _disposed;

    public NbdExport Export { get; private set; }
    public int CompletionFd => _completionFd.Fd;
    public int Depth { get; }
    public int MaxSegments { get; }
    public int InFlight => _inFlight;

    /// <summary>Requests answered with an error, connections dropped for protocol violations, reconnects made.</summary>
    public long Errors, ProtocolFailures, Reconnects;

    /// <summary>
    /// Connects and starts the receive thread. The first engine of a connector throws IOException when the
    /// server cannot be reached; later ones start disconnected and reconnect by themselves.
    /// </summary>
    public NbdQueueEngine(NbdConnector connector, int depth, int maxSegments = 1024, string name = "nbd")
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSegments, 1);
        _connector = connector;
        _log = connector.Logger;
        _options = connector.Options;
        Depth = depth;
        MaxSegments = Math.Min(maxSegments, 1023); // one iovec for the header, IOV_MAX in all
        _slots = new Slot[depth];
        _free = new Stack<Slot>(depth);
        for (int i = depth - 1; i >= 0; i--) _free.Push(_slots[i] = new Slot(i, MaxSegments));
        _toSend = new Queue<Slot>(depth);
        _completed = new Queue<Slot>(depth);
        _batch = new List<Slot>(depth);
        _headers = new NativeBuffer(depth * NbdProtocol.RequestSize);
        _sendVectors = NativeBuffer.ForIoSlices(1024);
        _receiveVectors = NativeBuffer.ForIoSlices(MaxSegments + 1);
        _receiveBuffer = new NativeBuffer(MaxErrorChunk + 64);
        try
        {
            _socket = connector.Connect(out var export);
            Export = export;
        }
        catch (Exception e) when (e is IOException or SocketException && connector.Export is not null)
        {
            // A queue starting while the server is away: start disconnected and let the receive thread
            // reconnect (its requests wait or fail as on a lost connection); the disk is already known.
            _log.LogWarning("nbd {Uri}: cannot connect a queue's engine now ({Error}); reconnecting in the background", connector.Uri, e.Message);
            Export = connector.Export!;
        }
        catch
        {
            DisposeBuffers();
            throw;
        }
        _lastProgress = Environment.TickCount64;
        _receiver = new Thread(ReceiveLoop) { IsBackground = true, Name = $"{name} receive" };
        _receiver.Start();
    }

    public bool Enqueue(in BlockOperation operation)
    {
        if (!_free.TryPeek(out var slot)) return false;
        ushort command;
        ushort flags = 0;
        switch (operation.Kind)
        {
            case BlockOperationKind.Read: command = NbdProtocol.CmdRead; break;
            case BlockOperationKind.Write:
                command = NbdProtocol.CmdWrite;
                if (operation.Fua && Export.CanFua) flags |= NbdProtocol.CmdFlagFua;
                break;
            case BlockOperationKind.Flush: command = NbdProtocol.CmdFlush; break;
            case BlockOperationKind.Discard: command = NbdProtocol.CmdTrim; break;
            case BlockOperationKind.WriteZeroes: command = NbdProtocol.CmdWriteZeroes; flags |= NbdProtocol.CmdFlagNoHole; break;
            case BlockOperationKind.WriteZeroesUnmap: command = NbdProtocol.CmdWriteZeroes; break;
            default: command = ushort.MaxValue; break;
        }
        _free.Pop();
        slot.Generation++;
        slot.Command = command;
        slot.Flags = flags;
        slot.Offset = operation.Offset;
        slot.Token = operation.Token;
        slot.Error = 0;
        slot.Covered = 0;
        slot.Deadline = 0;
        slot.SegmentCount = 0;
        Interlocked.Increment(ref _inFlight);
        int refusal = Validate(operation, command);
        if (refusal != 0)
        {
            lock (_lock) CompleteLocked(slot, -refusal);
            return true;
        }
        slot.Length = command is NbdProtocol.CmdFlush ? 0u : (uint)operation.Length;
        if (command is NbdProtocol.CmdRead or NbdProtocol.CmdWrite)
        {
            var segments = operation.Segments;
            for (int i = 0; i < segments.Length; i++) slot.Segments[i] = new IoSlice(segments[i].Address, (nuint)segments[i].Length);
            slot.SegmentCount = segments.Length;
        }
        // An export without flush keeps nothing volatile that a flush could reach: success at once.
        if (command == NbdProtocol.CmdFlush && !Export.CanFlush || command == NbdProtocol.CmdTrim && !Export.CanTrim)
        {
            lock (_lock) CompleteLocked(slot, 0);
            return true;
        }
        lock (_lock)
        {
            slot.State = Queued;
            _toSend.Enqueue(slot);
        }
        return true;
    }

    /// <summary>Why an operation cannot go to this export (an errno), or 0.</summary>
    private int Validate(in BlockOperation operation, ushort command)
    {
        if (command == ushort.MaxValue) return StreamSocketIo.EINVAL;
        if (command is NbdProtocol.CmdWrite or NbdProtocol.CmdTrim or NbdProtocol.CmdWriteZeroes && Export.ReadOnly) return 1; // EPERM
        if (command == NbdProtocol.CmdWriteZeroes && !Export.CanWriteZeroes) return 95; // EOPNOTSUPP: not offered to the guest
        if (command == NbdProtocol.CmdFlush) return 0;
        if (operation.Offset < 0 || operation.Length < 0 || operation.Offset > Export.Size - operation.Length) return StreamSocketIo.EINVAL;
        if (operation.Length > uint.MaxValue) return StreamSocketIo.EINVAL;
        if (command is NbdProtocol.CmdRead or NbdProtocol.CmdWrite)
        {
            if (operation.Length > Export.MaximumPayload || operation.Segments.Length > MaxSegments) return StreamSocketIo.EINVAL;
            long total = 0;
            foreach (var s in operation.Segments) total += s.Length;
            if (total != operation.Length) return StreamSocketIo.EINVAL;
        }
        return 0;
    }

    public void Submit()
    {
        Socket? socket;
        int epoch;
        lock (_lock)
        {
            if (_toSend.Count == 0) return;
            socket = _socket;
            epoch = _epoch;
            if (socket is null)
            {
                HoldOrFailLocked();
                return;
            }
            if (!HasSentLocked()) _lastProgress = Environment.TickCount64; // an idle connection starts its clock now
            _batch.Clear();
            while (_toSend.TryDequeue(out var slot))
            {
                slot.State = Sent;
                _batch.Add(slot);
            }
        }
        Send(socket, epoch, _batch);
    }

    /// <summary>Sends a batch of slots already marked Sent; a failure drops the connection (the receive thread's side sees it too).</summary>
    private void Send(Socket socket, int epoch, List<Slot> batch)
    {
        string? failure = null;
        lock (_sendLock)
        {
            if (Volatile.Read(ref _epoch) != epoch) return; // dropped meanwhile: the drop has dealt with these slots
            var vectors = _sendVectors.AsIoVecs();
            var headers = _headers.Span;
            int used = 0;
            int fd = (int)socket.Handle;
            foreach (var slot in batch)
            {
                int extra = slot.Command == NbdProtocol.CmdWrite ? slot.SegmentCount : 0;
                if (used + 1 + extra > vectors.Length)
                {
                    failure = Flush(fd, vectors[..used]);
                    used = 0;
                    if (failure is not null) break;
                }
                var header = headers.Slice(slot.Index * NbdProtocol.RequestSize, NbdProtocol.RequestSize);
                BinaryPrimitives.WriteUInt32BigEndian(header, NbdProtocol.RequestMagic);
                BinaryPrimitives.WriteUInt16BigEndian(header[4..], slot.Flags);
                BinaryPrimitives.WriteUInt16BigEndian(header[6..], slot.Command);
                BinaryPrimitives.WriteUInt64BigEndian(header[8..], slot.Cookie);
                BinaryPrimitives.WriteUInt64BigEndian(header[16..], (ulong)slot.Offset);
                BinaryPrimitives.WriteUInt32BigEndian(header[24..], slot.Length);
                vectors[used++] = new IoSlice(_headers.Address + slot.Index * NbdProtocol.RequestSize, NbdProtocol.RequestSize);
                for (int i = 0; i < extra; i++) vectors[used++] = slot.Segments[i];
            }
            if (failure is null && used > 0) failure = Flush(fd, vectors[..used]);
        }
        if (failure is not null) RequestDrop(socket, failure, protocolFailure: false);
    }

    private string? Flush(int fd, Span<IoSlice> vectors)
    {
        var status = StreamSocketIo.SendAll(fd, vectors, TimeoutMs, out int errno);
        return status switch
        {
            TransferStatus.Done => null,
            TransferStatus.TimedOut => $"the server has not read a request for {_options.ReplyTimeout.TotalSeconds:0.#} s",
            _ => $"send failed: {StreamSocketIo.Describe(errno)}",
        };
    }

    private int TimeoutMs => (int)Math.Clamp(_options.ReplyTimeout.TotalMilliseconds, 1, int.MaxValue);

    public int Reap(Span<BlockCompletion> into)
    {
        int n = 0;
        lock (_lock)
        {
            while (n < into.Length && _completed.TryDequeue(out var slot))
            {
                into[n++] = new BlockCompletion(slot.Token, slot.Result);
                slot.State = Free;
                _free.Push(slot);
            }
            if (_completed.Count == 0) _completionFd.TryConsume();
        }
        Interlocked.Add(ref _inFlight, -n);
        return n;
    }

    /// <summary>
    /// NBD has no way to cancel one request: a queued one fails at once; one on the wire is given up by
    /// dropping the connection (everything on it fails with ECANCELED or is retried, as on a lost connection).
    /// </summary>
    public void Cancel(ulong token)
    {
        Socket? drop = null;
        lock (_lock)
        {
            foreach (var slot in _slots)
            {
                if (slot.Token != token) continue;
                if (slot.State == Queued)
                {
                    RemoveQueuedLocked(slot);
                    CompleteLocked(slot, -StreamSocketIo.ECANCELED);
                }
                else if (slot.State == Sent) drop = _socket;
            }
        }
        if (drop is not null) RequestDrop(drop, "a request was cancelled (NBD cannot cancel one request)", protocolFailure: true);
    }

    private void RemoveQueuedLocked(Slot slot)
    {
        int count = _toSend.Count;
        for (int i = 0; i < count; i++)
        {
            var s = _toSend.Dequeue();
            if (s != slot) _toSend.Enqueue(s);
        }
    }

    private void CompleteLocked(Slot slot, int result)
    {
        slot.State = Completed;
        slot.Result = result;
        if (result < 0) Errors++;
        _completed.Enqueue(slot);
        if (_completed.Count == 1) _completionFd.Signal();
    }

    /// <summary>While disconnected: queued requests wait until their deadline (or fail at once with no reconnect delay).</summary>
    private void HoldOrFailLocked()
    {
        long now = Environment.TickCount64;
        int count = _toSend.Count;
        for (int i = 0; i < count; i++)
        {
            var slot = _toSend.Dequeue();
            if (slot.Deadline == 0) slot.Deadline = now + (long)_options.ReconnectDelay.TotalMilliseconds;
            if (now >= slot.Deadline) CompleteLocked(slot, -StreamSocketIo.EIO);
            else _toSend.Enqueue(slot);
        }
    }

    /// <summary>
    /// Asks the receive thread to end a connection (it alone completes requests that are on the wire, so
    /// that no reply is still being read into a request's buffers once it has completed).
    /// </summary>
    private void RequestDrop(Socket socket, string reason, bool protocolFailure)
    {
        lock (_lock)
        {
            if (_socket != socket || _dropReason is not null) return;
            _dropReason = reason;
            _dropProtocol = protocolFailure;
        }
        try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
    }

    /// <summary>Ends a connection (the receive thread only): its requests fail, or wait for the next one.</summary>
    private void Drop(Socket socket, string reason, bool protocolFailure)
    {
        int failed = 0, kept = 0;
        List<Slot>? failing = null; // completed after the log line, so that a caller who sees the EIO can read why
        lock (_lock)
        {
            if (_socket != socket) return; // already dropped
            if (_dropReason is not null) { reason = _dropReason; protocolFailure = _dropProtocol; }
            _dropReason = null;
            _socket = null;
            _epoch++;
            long deadline = Environment.TickCount64 + (long)_options.ReconnectDelay.TotalMilliseconds;
            bool keep = !protocolFailure && _options.ReconnectDelay > TimeSpan.Zero && !_disposed;
            // Requests on the wire go back first, in the order they were sent; those not yet sent follow.
            int waiting = _toSend.Count;
            foreach (var slot in _slots)
            {
                if (slot.State != Sent) continue;
                if (keep)
                {
                    // What the lost connection delivered of a reply is read again from the next one. The
                    // deadline runs from the first loss: a server that accepts and then goes (or answers
                    // ESHUTDOWN) again and again cannot keep a request alive forever.
                    slot.State = Queued; slot.Error = 0; slot.Covered = 0;
                    if (slot.Deadline == 0) slot.Deadline = deadline;
                    _toSend.Enqueue(slot);
                    kept++;
                }
                else { (failing ??= []).Add(slot); failed++; }
            }
            for (int i = 0; i < waiting; i++) _toSend.Enqueue(_toSend.Dequeue());
            if (protocolFailure) ProtocolFailures++;
        }
        if (!_disposed)
        {
            if (protocolFailure) _log.LogError("nbd {Uri}: dropping the connection: {Reason}; {Failed} request(s) failed with EIO", _connector.Uri, reason, failed);
            else _log.LogWarning("nbd {Uri}: connection lost: {Reason}; {Failed} request(s) failed, {Kept} wait up to {Delay} s for a reconnect",
                _connector.Uri, reason, failed, kept, _options.ReconnectDelay.TotalSeconds);
        }
        if (failing is not null)
            lock (_lock) foreach (var slot in failing) CompleteLocked(slot, -StreamSocketIo.EIO);
        try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        lock (_sendLock) socket.Dispose();
    }

    // ---- The receive thread ----

    private void ReceiveLoop()
    {
        while (!_disposed)
        {
            Socket? socket;
            lock (_lock) socket = _socket;
            if (socket is null)
            {
                socket = Reconnect();
                if (socket is null) return;
            }
            string? failure;
            bool protocolFailure = false;
            try
            {
                failure = ReceiveReplies(socket, ref protocolFailure);
            }
            catch (ObjectDisposedException)
            {
                failure = "the connection was closed";
            }
            catch (Exception e) when (e is IOException or SocketException)
            {
                failure = e.Message;
            }
            Drop(socket, failure ?? "closed", protocolFailure);
        }
    }

    private Socket? Reconnect()
    {
        int backoffMs = 50;
        bool logged = false;
        while (!_disposed)
        {
            lock (_lock) HoldOrFailLocked();
            try
            {
                var socket = _connector.Connect(out var export);
                Export = export;
                List<Slot> resend;
                int epoch;
                lock (_lock)
                {
                    if (_disposed) { socket.Dispose(); return null; }
                    _socket = socket;
                    epoch = _epoch;
                    _lastProgress = Environment.TickCount64;
                    resend = new List<Slot>(_toSend.Count); // once per reconnect, not per request
                    while (_toSend.TryDequeue(out var slot)) { slot.State = Sent; resend.Add(slot); }
                    Reconnects++;
                }
                _log.LogWarning("nbd {Uri}: reconnected ({Export}); sending {Count} waiting request(s) again", _connector.Uri, export.Describe(), resend.Count);
                if (resend.Count > 0) Send(socket, epoch, resend);
                return socket;
            }
            catch (Exception e) when (e is IOException or SocketException)
            {
                if (!logged) _log.LogWarning("nbd {Uri}: reconnect failed: {Error}; retrying", _connector.Uri, e.Message);
                logged = true;
            }
            if (_stopping.Wait(backoffMs)) return null;
            backoffMs = Math.Min(backoffMs * 2, 1000);
        }
        return null;
    }

    /// <summary>Reads replies until the connection ends; returns why, with <paramref name="protocolFailure"/> set for a misbehaving server.</summary>
    private string? ReceiveReplies(Socket socket, ref bool protocolFailure)
    {
        int fd = (int)socket.Handle;
        int period = Math.Min(TimeoutMs, 500);
        var buffer = _receiveBuffer.Span;
        while (!_disposed)
        {
            if (!StreamSocketIo.WaitReadable(fd, period))
            {
                bool waiting;
                lock (_lock) waiting = HasSentLocked();
                if (waiting && Environment.TickCount64 - Volatile.Read(ref _lastProgress) > TimeoutMs)
                {
                    protocolFailure = true;
                    return $"no reply for {_options.ReplyTimeout.TotalSeconds:0.#} s with requests outstanding";
                }
                continue;
            }
            var status = ReceiveInto(fd, _receiveBuffer.Address, 4);
            if (status == TransferStatus.Closed) return "the server closed the connection";
            if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "a reply header");
            Volatile.Write(ref _lastProgress, Environment.TickCount64);
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(buffer);
            string? error = magic switch
            {
                NbdProtocol.SimpleReplyMagic => SimpleReply(fd, ref protocolFailure),
                NbdProtocol.StructuredReplyMagic when Export.StructuredReplies => StructuredChunk(fd, ref protocolFailure),
                _ => Protocol(ref protocolFailure, $"bad reply magic 0x{magic:x8}"),
            };
            if (error is not null) return error;
        }
        return "the engine was disposed";
    }

    // A server shutting down answers what it will not do with ESHUTDOWN and then goes: the request stays
    // on the wire and the connection is ended as if lost, so that with a reconnect delay it is sent again
    // to the restarted server (a graceful restart costs the guest nothing) and without one fails with EIO.
    private const string ShuttingDown = "the server is shutting down (ESHUTDOWN)";

    private string? SimpleReply(int fd, ref bool protocolFailure)
    {
        var status = ReceiveInto(fd, _receiveBuffer.Address + 4, NbdProtocol.SimpleReplySize - 4);
        if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "a simple reply");
        var buffer = _receiveBuffer.Span;
        uint error = BinaryPrimitives.ReadUInt32BigEndian(buffer[4..]);
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(buffer[8..]);
        var slot = Find(cookie);
        if (slot is null) return Protocol(ref protocolFailure, $"simple reply for unknown handle 0x{cookie:x16}");
        if (error == NbdProtocol.ErrorShutdown) return ShuttingDown;
        if (error == 0 && slot.Command == NbdProtocol.CmdRead)
        {
            // Data follows straight into the guest's buffers.
            var vectors = _receiveVectors.AsIoVecs()[..slot.SegmentCount];
            slot.Segments.AsSpan(0, slot.SegmentCount).CopyTo(vectors);
            status = StreamSocketIo.ReceiveAll(fd, vectors, TimeoutMs, out _);
            if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "read data");
            slot.Covered = slot.Length;
        }
        lock (_lock) CompleteLocked(slot, error == 0 ? ResultOf(slot) : -NbdProtocol.ToErrno(error));
        return null;
    }

    private string? StructuredChunk(int fd, ref bool protocolFailure)
    {
        var status = ReceiveInto(fd, _receiveBuffer.Address + 4, NbdProtocol.StructuredReplySize - 4);
        if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "a structured reply header");
        var buffer = _receiveBuffer.Span;
        ushort flags = BinaryPrimitives.ReadUInt16BigEndian(buffer[4..]);
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(buffer[6..]);
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(buffer[8..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(buffer[16..]);
        var slot = Find(cookie);
        if (slot is null) return Protocol(ref protocolFailure, $"structured reply (type {type}) for unknown handle 0x{cookie:x16}");
        bool done = (flags & NbdProtocol.ReplyFlagDone) != 0;
        switch (type)
        {
            case NbdProtocol.ChunkNone:
                if (length != 0 || !done) return Protocol(ref protocolFailure, $"NONE chunk of {length} bytes{(done ? "" : " without DONE")}");
                break;
            case NbdProtocol.ChunkOffsetData:
            {
                if (slot.Command != NbdProtocol.CmdRead) return Protocol(ref protocolFailure, $"data chunk for command {slot.Command}");
                if (length <= 8 || length - 8 > slot.Length) return Protocol(ref protocolFailure, $"data chunk of {length} bytes for a read of {slot.Length}");
                status = ReceiveInto(fd, _receiveBuffer.Address, 8);
                if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "a data chunk");
                long relative = (long)BinaryPrimitives.ReadUInt64BigEndian(buffer) - slot.Offset;
                uint bytes = length - 8;
                if (relative < 0 || relative > slot.Length - bytes) return Protocol(ref protocolFailure, $"data chunk at {relative} (+{bytes}) outside its read of {slot.Length}");
                var vectors = Slice(slot, relative, bytes);
                status = StreamSocketIo.ReceiveAll(fd, vectors, TimeoutMs, out _);
                if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "read data");
                slot.Covered += bytes;
                break;
            }
            case NbdProtocol.ChunkOffsetHole:
            {
                if (slot.Command != NbdProtocol.CmdRead || length != 12) return Protocol(ref protocolFailure, $"hole chunk of {length} bytes for command {slot.Command}");
                status = ReceiveInto(fd, _receiveBuffer.Address, 12);
                if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "a hole chunk");
                long relative = (long)BinaryPrimitives.ReadUInt64BigEndian(buffer) - slot.Offset;
                uint bytes = BinaryPrimitives.ReadUInt32BigEndian(buffer[8..]);
                if (bytes == 0 || relative < 0 || bytes > slot.Length || relative > slot.Length - bytes)
                    return Protocol(ref protocolFailure, $"hole at {relative} (+{bytes}) outside its read of {slot.Length}");
                foreach (var v in Slice(slot, relative, bytes)) NativeBuffer.Clear(v.Base, v.Length);
                slot.Covered += bytes;
                break;
            }
            default:
            {
                if ((type & NbdProtocol.ChunkErrorBit) == 0) return Protocol(ref protocolFailure, $"unexpected chunk type {type}");
                if (length < 6 || length > MaxErrorChunk) return Protocol(ref protocolFailure, $"error chunk of {length} bytes");
                status = ReceiveInto(fd, _receiveBuffer.Address, (int)length);
                if (status != TransferStatus.Done) return Failure(status, ref protocolFailure, "an error chunk");
                uint error = BinaryPrimitives.ReadUInt32BigEndian(buffer);
                ushort messageLength = BinaryPrimitives.ReadUInt16BigEndian(buffer[4..]);
                int expected = 6 + messageLength + (type == NbdProtocol.ChunkErrorOffset ? 8 : 0);
                if (error == 0 || messageLength > length - 6 || type is NbdProtocol.ChunkError or NbdProtocol.ChunkErrorOffset && expected != length)
                    return Protocol(ref protocolFailure, $"malformed error chunk (error {error}, message {messageLength} bytes in {length})");
                if (error == NbdProtocol.ErrorShutdown) return ShuttingDown;
                if (slot.Error == 0) slot.Error = NbdProtocol.ToErrno(error);
                if (_log.IsEnabled(LogLevel.Debug))
                    _log.LogDebug("nbd {Uri}: error {Error} for a request at {Offset}: {Message}", _connector.Uri, error, slot.Offset,
                        System.Text.Encoding.UTF8.GetString(buffer.Slice(6, messageLength)));
                break;
            }
        }
        if (!done) return null;
        int result;
        if (slot.Error != 0) result = -slot.Error;
        else if (slot.Command == NbdProtocol.CmdRead && slot.Covered != slot.Length)
        {
            _log.LogError("nbd {Uri}: read at {Offset} ended with {Covered} of {Length} bytes covered; failing it", _connector.Uri, slot.Offset, slot.Covered, slot.Length);
            result = -StreamSocketIo.EIO;
        }
        else result = ResultOf(slot);
        lock (_lock) CompleteLocked(slot, result);
        return null;
    }

    private static int ResultOf(Slot slot) => slot.Command is NbdProtocol.CmdRead or NbdProtocol.CmdWrite ? (int)Math.Min(slot.Length, int.MaxValue) : 0;

    /// <summary>The guest iovecs covering [relative, relative + bytes) of a read, in the receive thread's array.</summary>
    private Span<IoSlice> Slice(Slot slot, long relative, uint bytes)
    {
        var vectors = _receiveVectors.AsIoVecs();
        int used = 0;
        long skip = relative, left = bytes;
        for (int i = 0; i < slot.SegmentCount && left > 0; i++)
        {
            long segmentLength = (long)slot.Segments[i].Length;
            if (skip >= segmentLength) { skip -= segmentLength; continue; }
            long take = Math.Min(segmentLength - skip, left);
            vectors[used++] = new IoSlice(slot.Segments[i].Base + (nint)skip, (nuint)take);
            left -= take;
            skip = 0;
        }
        return vectors[..used];
    }

    private Slot? Find(ulong cookie)
    {
        uint index = (uint)cookie;
        if (index >= (uint)_slots.Length) return null;
        var slot = _slots[index];
        lock (_lock) return slot.State == Sent && slot.Cookie == cookie ? slot : null;
    }

    private bool HasSentLocked()
    {
        foreach (var slot in _slots) if (slot.State == Sent) return true;
        return false;
    }

    private TransferStatus ReceiveInto(int fd, nint address, int length)
    {
        Span<IoSlice> one = [new IoSlice(address, (nuint)length)];
        return StreamSocketIo.ReceiveAll(fd, one, TimeoutMs, out _);
    }

    private string Failure(TransferStatus status, ref bool protocolFailure, string what)
    {
        if (status == TransferStatus.TimedOut)
        {
            protocolFailure = true;
            return $"the server stopped for {_options.ReplyTimeout.TotalSeconds:0.#} s in the middle of {what}";
        }
        return status == TransferStatus.Closed ? $"the server closed the connection in the middle of {what}" : $"receiving {what} failed";
    }

    private static string Protocol(ref bool protocolFailure, string message)
    {
        protocolFailure = true;
        return "protocol violation: " + message;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _stopping.Set();
        Socket? socket;
        lock (_lock) socket = _socket;
        if (socket is not null)
        {
            SendDisconnect(socket);
            RequestDrop(socket, "disposed", protocolFailure: false);
        }
        _receiver.Join();
        lock (_lock)
        {
            // Whatever never got an answer fails now: a caller may still reap it.
            while (_toSend.TryDequeue(out var slot)) CompleteLocked(slot, -StreamSocketIo.ECANCELED);
        }
        _completionFd.Dispose();
        DisposeBuffers();
        _stopping.Dispose();
    }

    /// <summary>NBD_CMD_DISC: a polite goodbye so that the server does not log an abrupt disconnect.</summary>
    private void SendDisconnect(Socket socket)
    {
        Span<byte> request = stackalloc byte[NbdProtocol.RequestSize];
        request.Clear();
        BinaryPrimitives.WriteUInt32BigEndian(request, NbdProtocol.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request[6..], NbdProtocol.CmdDisconnect);
        lock (_sendLock)
        {
            try { socket.Send(request, SocketFlags.None, out _); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }
    }

    private void DisposeBuffers()
    {
        _headers.Dispose();
        _sendVectors.Dispose();
        _receiveVectors.Dispose();
        _receiveBuffer.Dispose();
    }
}
