using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// A packed ring in memfd-backed guest memory, with our driver on one side and our device on the
/// other: what both see is real shared memory, addressed as a frontend would (frontend-virtual ring
/// addresses, guest-physical buffer addresses). Buffers come from a bump allocator after the ring.
/// </summary>
internal sealed class PackedRingFixture : IDisposable
{
    public const ulong MemorySize = 4 << 20;
    private ulong _nextBuffer;

    public SharedMemory Shared { get; }
    /// <summary>The device's view: the shared region, plus a dirty log when one was asked for.</summary>
    public GuestMemory Memory { get; }
    public PackedRingPlacement Placement { get; }
    public PackedDriverQueue Driver { get; }
    public PackedQueue Device { get; }
    public DirtyLog? Log { get; }
    public int Size { get; }

    public PackedRingFixture(int size, MetadataAccess access, bool eventIndex = false, bool withLog = false, ulong logAddress = 0)
    {
        Size = size;
        Shared = new SharedMemory(MemorySize);
        Placement = PackedRingPlacement.At(Shared.Allocate(PackedRingPlacement.At(0, size).End + 16, 4096), size);
        if (withLog)
        {
            ulong bytes = MemorySize / 4096 / 8 + 4096;
            var fd = FileDescriptors.CreateMemfd("packed-log", (long)bytes);
            Log = new DirtyLog(MemoryMapping.Map(fd, 0, bytes, true), 0, bytes);
            fd.Dispose();
        }
        Memory = GuestMemory.Create(Shared.Memory.Regions, Log, 1);
        Driver = new PackedDriverQueue(Shared.Memory, Placement, size, eventIndex);
        Device = new PackedQueue(0, access) { EventIndex = eventIndex };
        Device.SetSize(size);
        Device.SetRings(Rings(logAddress, logAddress != 0));
        _nextBuffer = (Placement.End + 4095) & ~4095ul;
    }

    public RingAddresses Rings(ulong logAddress = 0, bool logUsed = false)
        => new(Shared.ToFrontendVirtual(Placement.Descriptors), Shared.ToFrontendVirtual(Placement.DriverArea),
            Shared.ToFrontendVirtual(Placement.DeviceArea), logAddress, logUsed);

    public bool Attach() => Device.Attach(Memory);

    /// <summary>Reserves guest memory for buffers; wraps round to the start of the buffer area when exhausted.</summary>
    public ulong AllocateBuffer(uint length, ulong alignment = 16)
    {
        ulong start = (_nextBuffer + alignment - 1) & ~(alignment - 1);
        if (start + length > MemorySize)
            start = (Placement.End + 4095) & ~4095ul;
        _nextBuffer = start + length;
        return start;
    }

    public Span<byte> Span(ulong gpa, int length) => Shared.GetSpan(gpa, length);

    /// <summary>Writes a raw descriptor into the ring, as a hostile driver would.</summary>
    public void WriteDescriptor(int slot, PackedDescriptor descriptor)
        => Shared.Memory.Write(Placement.Descriptors + (ulong)slot * PackedRingLayout.DescriptorSize, descriptor);

    public PackedDescriptor ReadDescriptor(int slot)
        => Shared.Memory.Read<PackedDescriptor>(Placement.Descriptors + (ulong)slot * PackedRingLayout.DescriptorSize);

    public void Dispose()
    {
        Shared.Dispose();
        Log?.Dispose();
    }
}
