using System.Runtime.CompilerServices;
using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// The driver side of a packed virtqueue: what a guest's virtio driver does, for our frontend
/// library and for tests. Buffer ids come from a free list; each id remembers how many ring
/// descriptors its chain took, so that reaping can skip to where the device writes the next used
/// descriptor. The device is not trusted: a used descriptor naming an id that is not in flight
/// throws <see cref="VirtqueueException"/>. Not thread-safe: one thread adds and reaps.
/// </summary>
public sealed unsafe class PackedDriverQueue : IDriverQueue
{
    private readonly byte* _desc, _driverArea, _deviceArea;
    private readonly ushort[] _freeIds;
    private int _freeIdCount;
    private readonly ushort[] _idDescriptors; // descriptors per in-flight id; 0 = not in flight
    private int _freeCount;

    private int _nextAvail;
    private bool _availWrap = true;
    private int _nextUsed;
    private bool _usedWrap = true;

    // Heads added but not yet exposed: Publish writes their flags, last first, so the device sees the batch at once.
    private readonly int[] _pendingHeads;
    private readonly ushort[] _pendingFlags;
    private int _pendingCount;
    private int _publishedPosition; // extended position (PackedRingLayout.Extended) after the last publish
    private int _kickedPosition;

    public int Size { get; }
    public bool EventIndex { get; }
    public PackedRingPlacement Placement { get; }
    public int FreeCount => _freeCount;
    public int InFlight { get; private set; }

    public PackedDriverQueue(GuestMemory memory, PackedRingPlacement placement, int size, bool eventIndex)
    {
        if (!PackedRingLayout.IsValidQueueSize(size)) throw new ArgumentOutOfRangeException(nameof(size));
        Size = size;
        EventIndex = eventIndex;
        Placement = placement;
        _desc = (byte*)Translate(memory, placement.Descriptors, PackedRingLayout.DescriptorRingSize(size));
        _driverArea = (byte*)Translate(memory, placement.DriverArea, PackedRingLayout.EventSuppressionSize);
        _deviceArea = (byte*)Translate(memory, placement.DeviceArea, PackedRingLayout.EventSuppressionSize);
        new Span<byte>(_desc, (int)PackedRingLayout.DescriptorRingSize(size)).Clear(); // the ring starts zeroed (2.8.13)
        *(uint*)_driverArea = 0;
        *(uint*)_deviceArea = 0;
        _freeIds = new ushort[size];
        for (int i = 0; i < size; i++) _freeIds[i] = (ushort)(size - 1 - i); // pop order 0, 1, 2, ...
        _freeIdCount = size;
        _idDescriptors = new ushort[size];
        _freeCount = size;
        _pendingHeads = new int[size];
        _pendingFlags = new ushort[size];
        _publishedPosition = _kickedPosition = PackedRingLayout.Extended(0, true, size);
    }

    private static nint Translate(GuestMemory memory, ulong gpa, ulong length)
        => memory.TryTranslate(gpa, length, true, out nint host) ? host : throw new ArgumentException($"ring area {gpa:x}+{length:x} is not in one writable region");

    private ref PackedDescriptor DescriptorAt(int slot) => ref Unsafe.AsRef<PackedDescriptor>(_desc + slot * PackedRingLayout.DescriptorSize);

    private ref ushort FlagsAt(int slot) => ref Unsafe.AsRef<ushort>(_desc + slot * PackedRingLayout.DescriptorSize + (int)PackedRingLayout.DescriptorFlagsOffset);

    private void Advance(ref int slot, ref bool wrap, int by = 1)
    {
        slot += by;
        if (slot >= Size) { slot -= Size; wrap = !wrap; }
    }

    public bool TryAdd(ReadOnlySpan<DriverBuffer> buffers, out ushort id)
    {
        id = 0;
        if (buffers.IsEmpty || buffers.Length > _freeCount || _freeIdCount == 0) return false;
        id = _freeIds[--_freeIdCount];
        int head = _nextAvail;
        ushort headFlags = 0;
        for (int i = 0; i < buffers.Length; i++)
        {
            ushort flags = (ushort)(PackedRingLayout.AvailableFlags(_availWrap)
                | (buffers[i].DeviceWritable ? VirtqDescriptor.FlagWrite : 0) | (i < buffers.Length - 1 ? VirtqDescriptor.FlagNext : 0));
            ref var d = ref DescriptorAt(_nextAvail);
            // One 16-byte store per descriptor. The head keeps its old flags until Publish exposes it.
            // The device reads the id from the last descriptor; every one carries it, as Linux does.
            if (i == 0) headFlags = flags;
            d = new PackedDescriptor(buffers[i].GuestAddress, buffers[i].Length, id, i == 0 ? d.Flags : flags);
            Advance(ref _nextAvail, ref _availWrap);
        }
        Track(id, buffers.Length, head, headFlags);
        return true;
    }

    public bool TryAddIndirect(GuestMemory memory, ulong tableAddress, ReadOnlySpan<DriverBuffer> buffers, out ushort id)
    {
        id = 0;
        if (buffers.IsEmpty || _freeCount == 0 || _freeIdCount == 0) return false;
        for (int i = 0; i < buffers.Length; i++)
            memory.Write(tableAddress + (ulong)i * PackedRingLayout.DescriptorSize,
                new PackedDescriptor(buffers[i].GuestAddress, buffers[i].Length, 0, buffers[i].DeviceWritable ? VirtqDescriptor.FlagWrite : (ushort)0));
        id = _freeIds[--_freeIdCount];
        int head = _nextAvail;
        ref var d = ref DescriptorAt(head);
        d.Address = tableAddress;
        d.Length = (uint)(buffers.Length * PackedRingLayout.DescriptorSize);
        d.Id = id;
        ushort headFlags = (ushort)(VirtqDescriptor.FlagIndirect | PackedRingLayout.AvailableFlags(_availWrap));
        Advance(ref _nextAvail, ref _availWrap);
        Track(id, 1, head, headFlags);
        return true;
    }

    private void Track(ushort id, int descriptors, int head, ushort headFlags)
    {
        _idDescriptors[id] = (ushort)descriptors;
        _freeCount -= descriptors;
        InFlight++;
        _pendingHeads[_pendingCount] = head;
        _pendingFlags[_pendingCount] = headFlags;
        _pendingCount++;
    }

    /// <summary>Exposes every chain added since the last call: head flags with release ordering, the earliest last.</summary>
    public void Publish()
    {
        for (int i = _pendingCount - 1; i >= 0; i--) Volatile.Write(ref FlagsAt(_pendingHeads[i]), _pendingFlags[i]);
        _pendingCount = 0;
        _publishedPosition = PackedRingLayout.Extended(_nextAvail, _availWrap, Size);
    }

    /// <summary>Whether the device event suppression structure asks for a kick for what was published since the last call.</summary>
    public bool NeedsKick()
    {
        Interlocked.MemoryBarrier(); // our flags before the device's suppression state
        int old = _kickedPosition;
        _kickedPosition = _publishedPosition;
        if (old == _publishedPosition) return false;
        uint ev = Volatile.Read(ref *(uint*)_deviceArea);
        return ((ev >> 16) & 3) switch
        {
            PackedRingLayout.EventDisable => false,
            PackedRingLayout.EventDescriptor when EventIndex => PackedRingLayout.NeedsEvent((ushort)ev, _publishedPosition, old, Size),
            _ => true,
        };
    }

    public bool TryGetUsed(out ushort id, out uint length)
    {
        id = 0; length = 0;
        ushort flags = Volatile.Read(ref FlagsAt(_nextUsed));
        if (!PackedRingLayout.IsUsed(flags, _usedWrap)) return false;
        ref var d = ref DescriptorAt(_nextUsed);
        ushort usedId = d.Id;
        if (usedId >= Size || _idDescriptors[usedId] == 0) throw new VirtqueueException($"device returned buffer id {usedId}, which is not in flight");
        id = usedId;
        length = d.Length;
        int count = _idDescriptors[usedId];
        _idDescriptors[usedId] = 0;
        Advance(ref _nextUsed, ref _usedWrap, count);
        _freeCount += count;
        _freeIds[_freeIdCount++] = usedId;
        InFlight--;
        return true;
    }

    public void DisableInterrupts() => Volatile.Write(ref *(uint*)_driverArea, (uint)PackedRingLayout.EventDisable << 16);

    public bool EnableInterrupts()
    {
        uint value = EventIndex
            ? (uint)(_nextUsed | (_usedWrap ? PackedRingLayout.WrapBit : 0)) | ((uint)PackedRingLayout.EventDescriptor << 16)
            : (uint)PackedRingLayout.EventEnable << 16;
        Volatile.Write(ref *(uint*)_driverArea, value);
        Interlocked.MemoryBarrier();
        return PackedRingLayout.IsUsed(Volatile.Read(ref FlagsAt(_nextUsed)), _usedWrap);
    }
}
