using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Virtio;

namespace SharpVhost.Bench.Ring;

/// <summary>
/// The guest memory of the one-thread ring micro-benchmarks (<see cref="RingThroughput"/>,
/// <see cref="PackedRingThroughput"/>): one memfd, mapped once as a single region for the driver and
/// again, split into <c>regions</c> equal regions, as the device's memory domain, with one reader
/// registered for the device. Builds a driver/device queue pair of either layout over it, the device
/// reaching the rings through its own (user address) mapping as a backend does.
/// </summary>
internal sealed class RingBenchMemory : IDisposable
{
    public const ulong GpaBase = 0x1_0000_0000, UvaDelta = 0x7e00_0000_0000;

    private readonly SafeFileHandle _fd;
    private readonly MemoryRegion _driverRegion;
    private readonly GuestMemoryDomain _domain;

    /// <summary>Total size of guest memory (all regions), starting at <see cref="GpaBase"/>.</summary>
    public ulong Size { get; }

    /// <summary>The driver's view: all of guest memory as one region.</summary>
    public GuestMemory DriverView { get; }

    /// <summary>The device's reader of the domain: enter around everything the device does, as a worker would.</summary>
    public MemoryReader Reader { get; }

    public RingBenchMemory(string name, ulong regionSize, int regions = 1)
    {
        if (regions < 1 || regions > 64) throw new ArgumentOutOfRangeException(nameof(regions));
        Size = regionSize * (ulong)regions;
        _fd = FileDescriptors.CreateMemfd(name, (long)Size);
        try
        {
            _driverRegion = MemoryRegion.Map(_fd, new RegionDescription(GpaBase, Size, GpaBase + UvaDelta, 0));
            DriverView = GuestMemory.Create([_driverRegion], null, 0);
            _domain = new GuestMemoryDomain();
            _domain.ReplaceAll(Enumerable.Range(0, regions).Select(i =>
            {
                ulong gpa = GpaBase + (ulong)i * regionSize;
                return MemoryRegion.Map(_fd, new RegionDescription(gpa, regionSize, gpa + UvaDelta, (ulong)i * regionSize));
            }).ToArray());
            Reader = _domain.RegisterReader();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>A split ring at <paramref name="ringBase"/> (guest physical), event index on both sides.</summary>
    public (SplitDriverQueue Driver, SplitQueue Device) CreateSplit(ulong ringBase, int queueSize, MetadataAccess access)
    {
        var placement = SplitRingPlacement.At(ringBase, queueSize);
        var driver = new SplitDriverQueue(DriverView, placement, queueSize, eventIndex: true);
        var device = new SplitQueue(0, access) { EventIndex = true };
        device.SetSize(queueSize);
        device.SetRings(new RingAddresses(placement.Descriptors + UvaDelta, placement.Avail + UvaDelta, placement.Used + UvaDelta));
        return (driver, device);
    }

    /// <summary>A packed ring at <paramref name="ringBase"/> (guest physical), event index on both sides.</summary>
    public (PackedDriverQueue Driver, PackedQueue Device) CreatePacked(ulong ringBase, int queueSize, MetadataAccess access)
    {
        var placement = PackedRingPlacement.At(ringBase, queueSize);
        var driver = new PackedDriverQueue(DriverView, placement, queueSize, eventIndex: true);
        var device = new PackedQueue(0, access) { EventIndex = true };
        device.SetSize(queueSize);
        device.SetRings(new RingAddresses(placement.Descriptors + UvaDelta, placement.DriverArea + UvaDelta, placement.DeviceArea + UvaDelta));
        return (driver, device);
    }

    public void Dispose()
    {
        Reader?.Dispose();
        _domain?.Dispose();
        _driverRegion?.Dispose();
        _fd?.Dispose();
    }
}
