using System.Runtime.CompilerServices;
using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>A buffer the driver offers: guest-physical address, length, and whether the device may write it.</summary>
public readonly record struct DriverBuffer(ulong GuestAddress, uint Length, bool DeviceWritable);

/// <summary>Guest-physical placement of a split ring's three areas, laid out back to back with the spec's alignment.</summary>
public readonly record struct SplitRingPlacement(ulong Descriptors, ulong Avail, ulong Used, ulong End)
{
    public static SplitRingPlacement At(ulong baseAddress, int queueSize)
    {
        ulong desc = Align(baseAddress, 16);
        ulong avail = desc + SplitRingLayout.DescriptorTableSize(queueSize);
        ulong used = Align(avail + SplitRingLayout.AvailSize(queueSize), 4);
        return new SplitRingPlacement(desc, avail, used, used + SplitRingLayout.UsedSize(queueSize));
    }

    private static ulong Align(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);
}

/// <summary>
/// The driver side of a split virtqueue: what a guest's virtio driver does, for our frontend library
/// and for tests. The device on the other side is not trusted: used entries naming descriptors that
/// are not in flight are rejected with <see cref="VirtqueueException"/>.
/// Not thread-safe: one thread adds and reaps.
/// </summary>
public sealed unsafe class SplitDriverQueue : IDriverQueue
{
    private readonly byte* _desc, _avail, _used;
    private readonly ushort[] _chainLength; // descriptors per in-flight head; 0 = not in flight
    private readonly ushort[] _next;        // private copy of the links (free list and chains): the device can rewrite the table
    private ushort _freeHead;
    private int _freeCount;
    private ushort _availIdx;       // next avail idx to publish
    private ushort _kickedAvailIdx; // avail idx at the last kick decision
    private ushort _lastUsed;       // next used idx to reap

    public int Size { get; }
    public bool EventIndex { get; }
    public SplitRingPlacement Placement { get; }
    public int FreeCount => _freeCount;
    public int InFlight { get; private set; }

    public SplitDriverQueue(GuestMemory memory, SplitRingPlacement placement, int size, bool eventIndex)
    {
        if (!SplitRingLayout.IsValidQueueSize(size)) throw new ArgumentOutOfRangeException(nameof(size));
        Size = size;
        EventIndex = eventIndex;
        Placement = placement;
        _desc = (byte*)Translate(memory, placement.Descriptors, SplitRingLayout.DescriptorTableSize(size));
        _avail = (byte*)Translate(memory, placement.Avail, SplitRingLayout.AvailSize(size));
        _used = (byte*)Translate(memory, placement.Used, SplitRingLayout.UsedSize(size));
        _chainLength = new ushort[size];
        _next = new ushort[size];
        new Span<byte>(_desc, (int)SplitRingLayout.DescriptorTableSize(size)).Clear();
        new Span<byte>(_avail, (int)SplitRingLayout.AvailSize(size)).Clear();
        new Span<byte>(_used, (int)SplitRingLayout.UsedSize(size)).Clear();
        for (int i = 0; i < size; i++) _next[i] = DescriptorAt(i).Next = (ushort)(i + 1);
        _freeHead = 0;
        _freeCount = size;
    }

    private static nint Translate(GuestMemory memory, ulong gpa, ulong length)
        => memory.TryTranslate(gpa, length, true, out nint host) ? host : throw new ArgumentException($"ring area {gpa:x}+{length:x} is not in one writable region");

    private ref VirtqDescriptor DescriptorAt(int index) => ref Unsafe.AsRef<VirtqDescriptor>(_desc + index * SplitRingLayout.DescriptorSize);

    private ref ushort AvailIdx => ref Unsafe.AsRef<ushort>(_avail + SplitRingLayout.AvailIdxOffset);
    private ref ushort AvailFlags => ref Unsafe.AsRef<ushort>(_avail + SplitRingLayout.AvailFlagsOffset);
    private ref ushort UsedEvent => ref Unsafe.AsRef<ushort>(_avail + SplitRingLayout.UsedEventOffset(Size));
    private ref ushort UsedIdx => ref Unsafe.AsRef<ushort>(_used + SplitRingLayout.UsedIdxOffset);
    private ref ushort UsedFlags => ref Unsafe.AsRef<ushort>(_used + SplitRingLayout.UsedFlagsOffset);
    private ref ushort AvailEvent => ref Unsafe.AsRef<ushort>(_used + SplitRingLayout.AvailEventOffset(Size));

    /// <summary>Chains <paramref name="buffers"/> (readable ones first) and places the head in the avail ring, unpublished.</summary>
    public bool TryAdd(ReadOnlySpan<DriverBuffer> buffers, out ushort head)
    {
        head = 0;
        if (buffers.IsEmpty || buffers.Length > _freeCount) return false;
        head = _freeHead;
        ushort index = head;
        for (int i = 0; i < buffers.Length; i++)
        {
            ref var d = ref DescriptorAt(index);
            ushort next = _next[index];
            bool last = i == buffers.Length - 1;
            d.Address = buffers[i].GuestAddress;
            d.Length = buffers[i].Length;
            d.Flags = (ushort)((buffers[i].DeviceWritable ? VirtqDescriptor.FlagWrite : 0) | (last ? 0 : VirtqDescriptor.FlagNext));
            if (last) _freeHead = next; else { d.Next = next; index = next; }
        }
        _freeCount -= buffers.Length;
        _chainLength[head] = (ushort)buffers.Length;
        Offer(head);
        return true;
    }

    /// <summary>
    /// Places <paramref name="buffers"/> in an indirect table at <paramref name="tableAddress"/> (16 bytes
    /// per buffer, in driver-writable guest memory <paramref name="memory"/>) using one ring descriptor.
    /// </summary>
    public bool TryAddIndirect(GuestMemory memory, ulong tableAddress, ReadOnlySpan<DriverBuffer> buffers, out ushort head)
    {
        head = 0;
        if (buffers.IsEmpty || _freeCount == 0) return false;
        for (int i = 0; i < buffers.Length; i++)
        {
            ushort flags = (ushort)((buffers[i].DeviceWritable ? VirtqDescriptor.FlagWrite : 0) | (i < buffers.Length - 1 ? VirtqDescriptor.FlagNext : 0));
            memory.Write(tableAddress + (ulong)i * SplitRingLayout.DescriptorSize, new VirtqDescriptor(buffers[i].GuestAddress, buffers[i].Length, flags, (ushort)(i + 1)));
        }
        head = _freeHead;
        ref var d = ref DescriptorAt(head);
        _freeHead = _next[head];
        d.Address = tableAddress;
        d.Length = (uint)(buffers.Length * SplitRingLayout.DescriptorSize);
        d.Flags = VirtqDescriptor.FlagIndirect;
        _freeCount--;
        _chainLength[head] = 1;
        Offer(head);
        return true;
    }

    private void Offer(ushort head)
    {
        Unsafe.AsRef<ushort>(_avail + SplitRingLayout.AvailRingOffset + 2 * (ulong)(_availIdx & (Size - 1))) = head;
        _availIdx++;
        InFlight++;
    }

    /// <summary>Makes everything added so far visible to the device (release ordering on avail.idx).</summary>
    public void Publish() => Volatile.Write(ref AvailIdx, _availIdx);

    /// <summary>Whether the device wants a kick for what was published since the last call.</summary>
    public bool NeedsKick()
    {
        Interlocked.MemoryBarrier(); // avail.idx before reading the device's suppression state
        ushort old = _kickedAvailIdx;
        _kickedAvailIdx = _availIdx;
        if (old == _availIdx) return false;
        return EventIndex
            ? SplitRingLayout.NeedsEvent(Volatile.Read(ref AvailEvent), _availIdx, old)
            : (Volatile.Read(ref UsedFlags) & SplitRingLayout.UsedNoNotify) == 0;
    }

    /// <summary>Reaps one used element; false if none is pending. Throws if the device names a chain not in flight.</summary>
    public bool TryGetUsed(out ushort head, out uint length)
    {
        head = 0; length = 0;
        ushort usedIdx = Volatile.Read(ref UsedIdx);
        if (usedIdx == _lastUsed) return false;
        if ((ushort)(usedIdx - _lastUsed) > Size) throw new VirtqueueException($"device's used index {usedIdx} ran more than the queue size ahead of {_lastUsed}");
        ulong element = Unsafe.AsRef<ulong>(_used + SplitRingLayout.UsedRingOffset + (ulong)(_lastUsed & (Size - 1)) * SplitRingLayout.UsedElementSize);
        uint id = (uint)element;
        if (id >= Size || _chainLength[id] == 0) throw new VirtqueueException($"device returned descriptor {id}, which is not in flight");
        head = (ushort)id;
        length = (uint)(element >> 32);
        _lastUsed++;
        Release(head);
        return true;
    }

    private void Release(ushort head)
    {
        int count = _chainLength[head];
        _chainLength[head] = 0;
        ushort last = head;
        for (int i = 1; i < count; i++) last = _next[last];
        _next[last] = _freeHead;
        _freeHead = head;
        _freeCount += count;
        InFlight--;
    }

    /// <summary>Asks the device not to interrupt (NO_INTERRUPT flag; with EVENT_IDX the used_event is left behind).</summary>
    public void DisableInterrupts()
    {
        if (!EventIndex) Volatile.Write(ref AvailFlags, SplitRingLayout.AvailNoInterrupt);
    }

    /// <summary>Asks for an interrupt at the next used element; true if some are already pending (reap instead of sleeping).</summary>
    public bool EnableInterrupts()
    {
        if (EventIndex) Volatile.Write(ref UsedEvent, _lastUsed);
        else Volatile.Write(ref AvailFlags, 0);
        Interlocked.MemoryBarrier();
        return Volatile.Read(ref UsedIdx) != _lastUsed;
    }

    /// <summary>Asks for an interrupt only once <paramref name="count"/> more used elements have arrived (EVENT_IDX batching).</summary>
    public void DelayInterrupts(ushort count)
    {
        if (EventIndex) Volatile.Write(ref UsedEvent, (ushort)(_lastUsed + count - 1));
    }
}
