using SharpVhost.Devices.Net;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Net;

/// <summary>
/// A guest in one process for net tests: memfd-backed guest memory, and for each queue of a
/// <see cref="NetDevice"/> the device side (SplitQueue + the device's processor) and the driver side
/// (SplitDriverQueue) over the same rings. Run* calls play the queue worker for one batch.
/// </summary>
internal sealed class GuestNet : IDisposable
{
    private const ulong MemorySize = 32 << 20;
    private const ulong FrontendOffset = 0x7f00_0000_0000; // rings are given as frontend addresses, as SET_VRING_ADDR does
    private readonly GuestMemoryDomain _domain = new();
    private readonly MemoryReader _reader;
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _fd;

    public GuestMemory Memory => _domain.Current;
    /// <summary>For a real <see cref="QueueWorker"/> on one of the queues (it registers its own reader).</summary>
    public GuestMemoryDomain Domain => _domain;
    public NetDevice Device { get; }
    public GuestQueue[] Queues { get; }

    public GuestNet(NetDevice device, ulong features = 0, int queueSize = 256, bool eventIndex = true, MetadataAccess access = MetadataAccess.Direct)
    {
        Device = device;
        _fd = FileDescriptors.CreateMemfd("guest-net", (long)MemorySize);
        var region = MemoryRegion.Map(_fd, new RegionDescription(0, MemorySize, FrontendOffset, 0));
        _domain.ReplaceAll([region]);
        _reader = _domain.RegisterReader();
        if (features == 0) features = device.Features & ~(1ul << VirtioFeatureBits.LogAll);
        device.OnFeaturesNegotiated(features);
        Queues = new GuestQueue[device.QueueCount];
        ulong perQueue = MemorySize / (ulong)device.QueueCount;
        for (int i = 0; i < device.QueueCount; i++)
            Queues[i] = new GuestQueue(this, i, (ulong)i * perQueue, perQueue, queueSize, eventIndex, access);
    }

    public GuestQueue Rx(int pair = 0) => Queues[2 * pair];
    public GuestQueue Tx(int pair = 0) => Queues[2 * pair + 1];

    /// <summary>One batch of a queue worker: attach, process, publish.</summary>
    internal int Run(GuestQueue q, int budget)
    {
        var memory = _reader.Enter();
        try
        {
            if (!q.Device.Attach(memory)) return 0;
            int n = q.Processor.Process(q.Device, memory, budget);
            q.Device.FlushUsed();
            return n;
        }
        finally { _reader.Exit(); }
    }

    public void Dispose()
    {
        _reader.Dispose();
        _domain.Dispose();
        _fd.Dispose();
    }
}

/// <summary>One queue seen from both sides, with a bump allocator for buffers in the queue's slice of guest memory.</summary>
internal sealed class GuestQueue
{
    private readonly GuestNet _guest;
    private readonly ulong _dataStart, _dataEnd;
    private ulong _next;
    private readonly Dictionary<ushort, DriverBuffer[]> _inFlight = [];

    public SplitQueue Device { get; }
    public SplitDriverQueue Driver { get; }
    public IQueueProcessor Processor { get; }

    public GuestQueue(GuestNet guest, int index, ulong start, ulong size, int queueSize, bool eventIndex, MetadataAccess access)
    {
        _guest = guest;
        var placement = SplitRingPlacement.At(start, queueSize);
        Driver = new SplitDriverQueue(guest.Memory, placement, queueSize, eventIndex);
        Device = new SplitQueue(index, access) { EventIndex = eventIndex };
        Device.SetSize(queueSize);
        const ulong f = 0x7f00_0000_0000;
        Device.SetRings(new RingAddresses(placement.Descriptors + f, placement.Avail + f, placement.Used + f));
        _dataStart = _next = (placement.End + 4095) & ~4095ul;
        _dataEnd = start + size;
        Processor = guest.Device.CreateProcessor(index);
    }

    private ulong Allocate(int length)
    {
        ulong aligned = ((ulong)length + 63) & ~63ul;
        if (_next + aligned > _dataEnd) _next = _dataStart; // wrap: tests keep far less than a slice in flight
        ulong a = _next;
        _next += aligned;
        return a;
    }

    /// <summary>Offers a transmit chain holding <paramref name="bytes"/>, split into readable buffers of the given sizes (one buffer if none).</summary>
    public ushort AddReadable(ReadOnlySpan<byte> bytes, params int[] split)
    {
        if (split.Length == 0) split = [bytes.Length];
        var buffers = new DriverBuffer[split.Length];
        int offset = 0;
        for (int i = 0; i < split.Length; i++)
        {
            ulong a = Allocate(split[i]);
            _guest.Memory.CopyTo(a, bytes.Slice(offset, split[i]));
            buffers[i] = new DriverBuffer(a, (uint)split[i], false);
            offset += split[i];
        }
        return Add(buffers);
    }

    /// <summary>Offers a receive chain of writable buffers of the given sizes.</summary>
    public ushort AddWritable(params int[] sizes)
    {
        var buffers = new DriverBuffer[sizes.Length];
        for (int i = 0; i < sizes.Length; i++) buffers[i] = new DriverBuffer(Allocate(sizes[i]), (uint)sizes[i], true);
        return Add(buffers);
    }

    public ushort Add(DriverBuffer[] buffers)
    {
        if (!Driver.TryAdd(buffers, out ushort head)) throw new InvalidOperationException("ring full");
        _inFlight[head] = buffers;
        Driver.Publish();
        return head;
    }

    /// <summary>Offers <paramref name="count"/> receive chains of one buffer each.</summary>
    public void Refill(int count, int size)
    {
        for (int i = 0; i < count; i++) AddWritable(size);
    }

    public int Run(int budget = 64) => _guest.Run(this, budget);

    /// <summary>Runs batches until one handles nothing.</summary>
    public int RunAll()
    {
        int total = 0, n;
        while ((n = Run()) > 0) total += n;
        return total;
    }

    /// <summary>Reaps every used element: head, length written, and the bytes the device wrote.</summary>
    public List<(ushort Head, uint Length, byte[] Data)> Reap()
    {
        var result = new List<(ushort, uint, byte[])>();
        while (Driver.TryGetUsed(out ushort head, out uint length))
        {
            var buffers = _inFlight[head];
            _inFlight.Remove(head);
            var data = new byte[length];
            int offset = 0;
            foreach (var b in buffers)
            {
                if (!b.DeviceWritable || offset >= data.Length) continue;
                int n = (int)Math.Min(b.Length, (uint)(data.Length - offset));
                _guest.Memory.CopyFrom(b.GuestAddress, data.AsSpan(offset, n));
                offset += n;
            }
            result.Add((head, length, data));
        }
        return result;
    }
}
