using System.Reflection;
using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.TestSupport;

/// <summary>Where a device-visible region sits inside the test memfd.</summary>
public readonly record struct RegionSpec(ulong Offset, ulong Size, bool Writable = true);

/// <summary>
/// A memfd-backed guest. The driver sees the whole memfd through its own single writable mapping
/// (<see cref="DriverView"/>, no dirty log), so it can always build rings and buffers; the device sees
/// only what the test publishes in <see cref="Domain"/>: several regions, read-only ones, holes.
/// Guest-physical addresses start at <see cref="GpaBase"/>; frontend-virtual ones are GPA + <see cref="UvaDelta"/>
/// so any mix-up between the two spaces fails.
/// </summary>
public sealed class TestGuest : IDisposable
{
    public const ulong GpaBase = 0x1_0000_0000;
    public const ulong UvaDelta = 0x7e00_0000_0000;

    public SafeFileHandle Fd { get; }
    public ulong Size { get; }
    public GuestMemoryDomain Domain { get; } = new();
    public GuestMemory DriverView { get; }
    private readonly MemoryRegion _driverRegion;

    public TestGuest(ulong size, params RegionSpec[] deviceRegions)
    {
        Size = size;
        Fd = FileDescriptors.CreateMemfd("sharpvhost-test", (long)size);
        _driverRegion = MemoryRegion.Map(Fd, new RegionDescription(GpaBase, size, Uva(GpaBase), 0));
        DriverView = GuestMemory.Create([_driverRegion], null, 0);
        if (deviceRegions.Length == 0) deviceRegions = [new RegionSpec(0, size)];
        Domain.ReplaceAll(deviceRegions.Select(MapRegion).ToArray());
    }

    public static ulong Uva(ulong gpa) => gpa + UvaDelta;
    public static ulong Gpa(ulong offset) => GpaBase + offset;

    /// <summary>Maps a fresh device-side region of the memfd (same GPA/UVA for the same offset).</summary>
    public MemoryRegion MapRegion(RegionSpec spec)
        => MemoryRegion.Map(Fd, new RegionDescription(GpaBase + spec.Offset, spec.Size, Uva(GpaBase + spec.Offset), spec.Offset), spec.Writable);

    /// <summary>Driver-side bytes at a guest-physical address (always mapped, writable).</summary>
    public Span<byte> Bytes(ulong gpa, int length) => DriverView.GetSpan(gpa, length, true);

    public void Dispose()
    {
        Domain.Dispose();
        _driverRegion.Dispose();
        Fd.Dispose();
    }
}

/// <summary>A driver queue and a device queue on the same rings of a <see cref="TestGuest"/>.</summary>
public sealed class QueueHarness
{
    public TestGuest Guest { get; }
    public SplitQueue Device { get; }
    public SplitDriverQueue Driver { get; }
    public DescriptorChain Chain { get; } = new();
    public SplitRingPlacement Placement { get; }
    public int Size { get; }

    public QueueHarness(TestGuest guest, int size, MetadataAccess access, ulong ringOffset = 0, bool eventIndex = false,
        bool notifyOnEmpty = false, int index = 0, ulong usedLogGpa = 0, bool logUsed = false)
    {
        Guest = guest;
        Size = size;
        Placement = SplitRingPlacement.At(TestGuest.Gpa(ringOffset), size);
        Driver = new SplitDriverQueue(guest.DriverView, Placement, size, eventIndex);
        Device = new SplitQueue(index, access) { EventIndex = eventIndex, NotifyOnEmpty = notifyOnEmpty };
        Device.SetSize(size);
        Device.SetRings(RingsFor(Placement, usedLogGpa, logUsed));
    }

    public static RingAddresses RingsFor(SplitRingPlacement p, ulong usedLogGpa = 0, bool logUsed = false)
        => new(TestGuest.Uva(p.Descriptors), TestGuest.Uva(p.Avail), TestGuest.Uva(p.Used), usedLogGpa, logUsed);

    public bool Attach() => Device.Attach(Guest.Domain.Current);

    /// <summary>
    /// Puts both sides at free-running index <paramref name="index"/> with nothing in flight (as after
    /// 'index' round trips): the driver's private counters are set by reflection, the ring indices in
    /// memory, and the device resumes with SetBase. Used to start right before the 16-bit wrap.
    /// </summary>
    public void ForceBase(ushort index)
    {
        if (Driver.InFlight != 0) throw new InvalidOperationException("ForceBase needs an idle queue");
        DriverFields.Set(Driver, index);
        System.Runtime.CompilerServices.Unsafe.WriteUnaligned(ref Guest.Bytes(Placement.Avail + SplitRingLayout.AvailIdxOffset, 2)[0], index);
        System.Runtime.CompilerServices.Unsafe.WriteUnaligned(ref Guest.Bytes(Placement.Used + SplitRingLayout.UsedIdxOffset, 2)[0], index);
        Device.SetBase(index);
    }

    public ushort AvailIdxInRing => BitConverter.ToUInt16(Guest.Bytes(Placement.Avail + SplitRingLayout.AvailIdxOffset, 2));
    public ushort UsedIdxInRing => BitConverter.ToUInt16(Guest.Bytes(Placement.Used + SplitRingLayout.UsedIdxOffset, 2));
    public ushort UsedFlagsInRing => BitConverter.ToUInt16(Guest.Bytes(Placement.Used + SplitRingLayout.UsedFlagsOffset, 2));
    public ushort AvailEventInRing => BitConverter.ToUInt16(Guest.Bytes(Placement.Used + SplitRingLayout.AvailEventOffset(Size), 2));
    public ushort UsedEventInRing => BitConverter.ToUInt16(Guest.Bytes(Placement.Avail + SplitRingLayout.UsedEventOffset(Size), 2));
    public ushort AvailFlagsInRing => BitConverter.ToUInt16(Guest.Bytes(Placement.Avail + SplitRingLayout.AvailFlagsOffset, 2));

    public void WriteU16(ulong gpa, ushort value) => BitConverter.TryWriteBytes(Guest.Bytes(gpa, 2), value);
    public void WriteDescriptor(int index, VirtqDescriptor d)
        => System.Runtime.CompilerServices.Unsafe.WriteUnaligned(ref Guest.Bytes(Placement.Descriptors + (ulong)index * 16, 16)[0], d);
    public void WriteAvailEntry(int slot, ushort head) => WriteU16(Placement.Avail + SplitRingLayout.AvailRingOffset + 2 * (ulong)slot, head);
    public void WriteAvailIdx(ushort idx) => WriteU16(Placement.Avail + SplitRingLayout.AvailIdxOffset, idx);

    /// <summary>One full round trip of a single one-byte readable buffer (to advance indices for real).</summary>
    public void RoundTrips(int count, ulong bufferGpa)
    {
        Span<DriverBuffer> one = [new DriverBuffer(bufferGpa, 1, false)];
        while (count > 0)
        {
            int batch = Math.Min(count, Size);
            for (int i = 0; i < batch; i++) if (!Driver.TryAdd(one, out _)) throw new InvalidOperationException("ring full");
            Driver.Publish();
            if (!Attach()) throw new InvalidOperationException(Device.BrokenReason);
            for (int i = 0; i < batch; i++)
            {
                if (!Device.TryPop(Chain)) throw new InvalidOperationException("pop failed: " + Device.BrokenReason);
                Device.AddUsed(Chain, 0);
            }
            Device.FlushUsed();
            for (int i = 0; i < batch; i++) if (!Driver.TryGetUsed(out _, out _)) throw new InvalidOperationException("reap failed");
            count -= batch;
        }
    }
}

internal static class DriverFields
{
    private static readonly FieldInfo AvailIdx = Field("_availIdx"), Kicked = Field("_kickedAvailIdx"), LastUsed = Field("_lastUsed");

    private static FieldInfo Field(string name)
        => typeof(SplitDriverQueue).GetField(name, BindingFlags.NonPublic | BindingFlags.Instance)
           ?? throw new InvalidOperationException($"SplitDriverQueue.{name} is gone: update TestSupport.DriverFields");

    public static void Set(SplitDriverQueue driver, ushort index)
    {
        AvailIdx.SetValue(driver, index);
        Kicked.SetValue(driver, index);
        LastUsed.SetValue(driver, index);
    }
}
