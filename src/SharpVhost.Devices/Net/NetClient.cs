using Microsoft.Extensions.Logging;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Net;

public sealed record NetClientOptions
{
    public int QueueSize { get; init; } = 256;
    /// <summary>Bytes per receive buffer (and per transmit slot): a full 1500-MTU frame plus header fits in 2048.</summary>
    public int BufferSize { get; init; } = 2048;
    /// <summary>Ask for VIRTIO_NET_F_MRG_RXBUF (frames may then span several receive buffers).</summary>
    public bool MergeableRxBuffers { get; init; } = true;
}

/// <summary>
/// A virtio-net driver over vhost-user with one queue pair: sends and receives Ethernet frames through
/// any vhost-user-net backend (ours, DPDK's net_vhost), as DPDK's virtio_user would. Frames are copied
/// into and out of buffers in the shared memory. Not thread-safe: one thread sends, receives and polls.
/// The backend is not trusted: bad used entries throw <see cref="VirtqueueException"/>.
/// </summary>
public sealed class NetClient : IDisposable
{
    private readonly FrontendSession _session;
    private readonly FrontendQueue _rx, _tx;
    private readonly SharedMemory _memory;
    private readonly int _bufferSize;
    private readonly ulong _rxBase, _txBase;
    private readonly Stack<int> _freeTxSlots = new();
    private readonly int[] _txSlotOfHead;
    private readonly int[] _rxSlotOfHead;
    private readonly int _headerSize;

    public ulong Features => _session.Features;
    public bool Mergeable { get; }
    public MacAddress? Mac { get; }
    public long SentFrames { get; private set; }
    public long ReceivedFrames { get; private set; }

    private NetClient(FrontendSession session, NetClientOptions options)
    {
        _session = session;
        _bufferSize = options.BufferSize;
        ulong wanted = VirtioFeatureBits.Bit(VirtioFeatureBits.Version1) | VirtioFeatureBits.Bit(VirtioFeatureBits.RingEventIdx)
            | (1ul << VirtioNet.FeatureMac) | (1ul << VirtioNet.FeatureStatus)
            | (options.MergeableRxBuffers ? 1ul << VirtioNet.FeatureMrgRxbuf : 0);
        session.NegotiateFeatures(wanted);
        Mergeable = VirtioFeatureBits.Has(session.Features, VirtioNet.FeatureMrgRxbuf);
        _headerSize = VirtioFeatureBits.Has(session.Features, VirtioFeatureBits.Version1) || Mergeable ? VirtioNet.HeaderSize : VirtioNet.LegacyHeaderSize;
        int size = options.QueueSize;
        ulong ring = SplitRingPlacement.At(0, size).End + 8192;
        _memory = session.ShareMemory(2 * ring + 2 * (ulong)size * (ulong)_bufferSize + (1 << 20));
        _rxBase = _memory.Allocate((ulong)size * (ulong)_bufferSize, 4096);
        _txBase = _memory.Allocate((ulong)size * (ulong)_bufferSize, 4096);
        _rxSlotOfHead = new int[size];
        _txSlotOfHead = new int[size];
        for (int i = size - 1; i >= 0; i--) _freeTxSlots.Push(i);
        _rx = session.StartQueue(0, size);
        _tx = session.StartQueue(1, size);
        for (int i = 0; i < size; i++) PostRx(i);
        _rx.Publish();
        _rx.Ring.EnableInterrupts();
    }

    public static NetClient Connect(string socketPath, NetClientOptions? options = null, ILogger? logger = null, TimeSpan? timeout = null)
    {
        var session = FrontendSession.Connect(socketPath, logger, timeout);
        try { return new NetClient(session, options ?? new NetClientOptions()); }
        catch { session.Dispose(); throw; }
    }

    private void PostRx(int slot)
    {
        Span<DriverBuffer> b = [new DriverBuffer(_rxBase + (ulong)slot * (ulong)_bufferSize, (uint)_bufferSize, true)];
        if (!_rx.Ring.TryAdd(b, out ushort head)) throw new InvalidOperationException("receive ring full");
        _rxSlotOfHead[head] = slot;
    }

    /// <summary>Largest frame <see cref="TrySend"/> takes.</summary>
    public int MaxFrameLength => _bufferSize - _headerSize;

    /// <summary>Queues a frame for the backend; false when every transmit slot is still in flight (call again later).</summary>
    public bool TrySend(ReadOnlySpan<byte> frame, bool publish = true)
    {
        if (frame.Length > MaxFrameLength) throw new ArgumentException($"frame of {frame.Length} bytes is longer than {MaxFrameLength}", nameof(frame));
        ReapTx();
        if (!_freeTxSlots.TryPop(out int slot)) return false;
        ulong address = _txBase + (ulong)slot * (ulong)_bufferSize;
        var span = _memory.GetSpan(address, _headerSize + frame.Length);
        span[.._headerSize].Clear();
        frame.CopyTo(span[_headerSize..]);
        Span<DriverBuffer> b = [new DriverBuffer(address, (uint)span.Length, false)];
        if (!_tx.Ring.TryAdd(b, out ushort head)) { _freeTxSlots.Push(slot); return false; }
        _txSlotOfHead[head] = slot;
        if (publish) _tx.Publish();
        SentFrames++;
        return true;
    }

    /// <summary>Publishes frames queued with <c>publish: false</c> (one kick for a batch).</summary>
    public void Flush() => _tx.Publish();

    /// <summary>Sends a frame, waiting for a free slot up to <paramref name="timeout"/>.</summary>
    public bool Send(ReadOnlySpan<byte> frame, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (!TrySend(frame))
        {
            if (Environment.TickCount64 > deadline) return false;
            _tx.Ring.EnableInterrupts();
            Span<int> fds = [_tx.Call.Fd];
            EventFd.WaitAny(fds, 10);
            _tx.Call.TryConsume();
        }
        return true;
    }

    /// <summary>Frames the backend has not returned yet.</summary>
    public int TxInFlight => _tx.Ring.InFlight;

    private void ReapTx()
    {
        while (_tx.Ring.TryGetUsed(out ushort head, out _)) _freeTxSlots.Push(_txSlotOfHead[head]);
    }

    /// <summary>
    /// Takes one received frame into <paramref name="destination"/>; returns its length, 0 if none is
    /// waiting. Frames longer than the destination are cut to fit.
    /// </summary>
    public int TryReceive(Span<byte> destination)
    {
        if (!_rx.Ring.TryGetUsed(out ushort head, out uint length)) return 0;
        int copied = 0;
        int buffers = 1;
        int total = 0;
        for (int i = 0; i < buffers; i++)
        {
            if (i > 0 && !WaitUsed(out head, out length)) throw new VirtqueueException("backend announced more merged buffers than it returned");
            int slot = _rxSlotOfHead[head];
            if (length > _bufferSize) throw new VirtqueueException($"backend wrote {length} bytes into a {_bufferSize}-byte buffer");
            var data = _memory.GetSpan(_rxBase + (ulong)slot * (ulong)_bufferSize, (int)length);
            if (i == 0)
            {
                if (length < _headerSize) throw new VirtqueueException($"received {length} bytes, less than a virtio-net header");
                var header = VirtioNetHeader.Read(data, _headerSize);
                if (Mergeable) buffers = Math.Max(1, (int)header.NumBuffers);
                data = data[_headerSize..];
            }
            int n = Math.Min(data.Length, destination.Length - copied);
            data[..n].CopyTo(destination[copied..]);
            copied += n;
            total += data.Length;
            PostRx(slot);
        }
        _rx.Publish();
        ReceivedFrames++;
        return copied;
    }

    private bool WaitUsed(out ushort head, out uint length)
    {
        var deadline = Environment.TickCount64 + 1000;
        while (!_rx.Ring.TryGetUsed(out head, out length))
        {
            if (Environment.TickCount64 > deadline) return false;
            Thread.SpinWait(100);
        }
        return true;
    }

    /// <summary>Waits up to <paramref name="timeout"/> for a frame; returns its length or 0.</summary>
    public int Receive(Span<byte> destination, TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        Span<int> fds = [_rx.Call.Fd];
        while (true)
        {
            int n = TryReceive(destination);
            if (n > 0) return n;
            if (_rx.Ring.EnableInterrupts()) continue;
            long left = deadline - Environment.TickCount64;
            if (left <= 0) return 0;
            EventFd.WaitAny(fds, (int)Math.Min(left, 100));
            _rx.Call.TryConsume();
        }
    }

    public void Dispose() => _session.Dispose();
}
