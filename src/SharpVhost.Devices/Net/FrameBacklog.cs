using SharpVhost.Interop;

namespace SharpVhost.Devices.Net;

/// <summary>
/// A bounded queue of frames for one receive queue: any thread adds (the switch, an echo), only the
/// receive queue's worker takes. Slots are preallocated, so adding a frame is one copy and no
/// allocation; when the queue is full the frame is dropped and counted, and the producer (another
/// port) is never held up. An eventfd wakes the worker when frames arrive after it found the queue empty.
///
/// The slot protocol is the classic bounded MPMC ring with per-slot sequence numbers (Vyukov):
/// a producer claims a position with a CAS, fills the slot, then publishes its sequence.
/// </summary>
public sealed class FrameBacklog : IRxFrameSource, IDisposable
{
    private const int SlotHeaderSize = VirtioNet.HeaderSize;
    private readonly byte[] _slots;
    private readonly int[] _lengths;
    private readonly long[] _sequence;
    private readonly int _mask;
    private readonly int _slotSize;
    private readonly EventFd _wake = EventFd.Create(nonBlocking: true);
    private long _enqueuePosition;   // producers, CAS
    private long _dequeuePosition;   // the consumer only
    private int _wakeArmed;          // 0: the consumer may be asleep with nothing queued; a producer must signal
    private bool _rearmed;           // the consumer only: it set _wakeArmed to 0 since it last cleared the descriptor
    private long _dropped;

    public int Capacity { get; }
    public int MaxFrameLength { get; }
    /// <summary>Frames refused because the backlog was full or the frame too long for a slot.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);
    public int Count => (int)(Volatile.Read(ref _enqueuePosition) - Volatile.Read(ref _dequeuePosition));
    public int WakeFd => _wake.Fd;

    public FrameBacklog(int capacity, int maxFrameLength)
    {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(capacity), "a power of two of at least 2");
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFrameLength, VirtioNet.EthernetHeaderSize);
        Capacity = capacity;
        MaxFrameLength = maxFrameLength;
        _mask = capacity - 1;
        _slotSize = (SlotHeaderSize + maxFrameLength + 63) & ~63;
        _slots = GC.AllocateUninitializedArray<byte>(checked(capacity * _slotSize), pinned: true);
        _lengths = new int[capacity];
        _sequence = new long[capacity];
        for (int i = 0; i < capacity; i++) _sequence[i] = i;
    }

    /// <summary>Adds a copy of a frame leaving a guest (optionally with the two MAC addresses swapped, for echo).</summary>
    public bool TryEnqueue(in TxFrame frame, bool swapAddresses = false)
    {
        if (frame.Length > MaxFrameLength || !TryClaim(out long position)) return Drop();
        var slot = Slot(position);
        int n = frame.CopyTo(slot[SlotHeaderSize..]);
        if (swapAddresses && n >= 12) SwapAddresses(slot[SlotHeaderSize..]);
        Publish(position, slot, frame.Header, n);
        return true;
    }

    /// <summary>Adds a copy of <paramref name="frame"/>.</summary>
    public bool TryEnqueue(ReadOnlySpan<byte> frame, VirtioNetHeader header = default)
    {
        if (frame.Length > MaxFrameLength || !TryClaim(out long position)) return Drop();
        var slot = Slot(position);
        frame.CopyTo(slot[SlotHeaderSize..]);
        Publish(position, slot, header, frame.Length);
        return true;
    }

    private bool Drop()
    {
        Interlocked.Increment(ref _dropped);
        return false;
    }

    private Span<byte> Slot(long position) => _slots.AsSpan((int)(position & _mask) * _slotSize, _slotSize);

    private bool TryClaim(out long position)
    {
        position = Volatile.Read(ref _enqueuePosition);
        while (true)
        {
            long sequence = Volatile.Read(ref _sequence[position & _mask]);
            long difference = sequence - position;
            if (difference == 0)
            {
                long seen = Interlocked.CompareExchange(ref _enqueuePosition, position + 1, position);
                if (seen == position) return true;
                position = seen;
            }
            else if (difference < 0) return false; // the slot still holds a frame from a lap ago: full
            else position = Volatile.Read(ref _enqueuePosition);
        }
    }

    private void Publish(long position, Span<byte> slot, VirtioNetHeader header, int length)
    {
        header.Write(slot, SlotHeaderSize);
        _lengths[position & _mask] = length;
        Volatile.Write(ref _sequence[position & _mask], position + 1);
        // The frame must be visible before we read the flag (store then load: needs a full fence),
        // so that either the consumer sees the frame or we see that it may be asleep.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _wakeArmed) == 0 && Interlocked.Exchange(ref _wakeArmed, 1) == 0) _wake.Signal();
    }

    private static void SwapAddresses(Span<byte> frame)
    {
        Span<byte> tmp = stackalloc byte[6];
        frame[..6].CopyTo(tmp);
        frame.Slice(6, 6).CopyTo(frame);
        tmp.CopyTo(frame[6..]);
    }

    // ---- consumer (the receive queue's worker) ----

    /// <summary>
    /// Clears the wake descriptor once per batch, so the worker's poll does not spin on it. A producer
    /// signals after flipping the flag, so its signal may land after a batch already cleared the
    /// descriptor and after the consumer re-armed (flag 0 again): with the flag alone that signal would
    /// stay readable and wake the worker over and over while nothing is queued. Hence also clear it in
    /// the first batch after any re-arming.
    /// </summary>
    public void BeginBatch()
    {
        if (_rearmed || Volatile.Read(ref _wakeArmed) != 0)
        {
            _rearmed = false;
            _wake.TryConsume();
        }
    }

    public bool TryPeek(out VirtioNetHeader header, out ReadOnlySpan<byte> frame)
    {
        if (!TryPeekPublished(out header, out frame))
        {
            // Empty: let the next producer wake us, then look once more for a frame published meanwhile.
            Interlocked.Exchange(ref _wakeArmed, 0);
            _rearmed = true;
            if (!TryPeekPublished(out header, out frame)) return false;
        }
        return true;
    }

    private bool TryPeekPublished(out VirtioNetHeader header, out ReadOnlySpan<byte> frame)
    {
        long position = _dequeuePosition;
        if (Volatile.Read(ref _sequence[position & _mask]) != position + 1)
        {
            header = default;
            frame = default;
            return false;
        }
        var slot = Slot(position);
        header = VirtioNetHeader.Read(slot, SlotHeaderSize);
        frame = slot.Slice(SlotHeaderSize, _lengths[position & _mask]);
        return true;
    }

    public void Consume()
    {
        long position = _dequeuePosition;
        Volatile.Write(ref _sequence[position & _mask], position + Capacity);
        Volatile.Write(ref _dequeuePosition, position + 1);
    }

    public void Dispose() => _wake.Dispose();
}
