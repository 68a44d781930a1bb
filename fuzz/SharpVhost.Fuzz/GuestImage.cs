using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.Virtio;

namespace SharpVhost.Fuzz;

/// <summary>
/// A small guest whose memory the fuzz input fills: one memfd of <see cref="Size"/> bytes, mapped once,
/// seen by the device as two regions that are adjacent in guest-physical space (so buffers may straddle
/// them) but far apart in the front-end's virtual space (so rings may not).
/// </summary>
public sealed unsafe class GuestImage : IDisposable
{
    public const int Size = 0x10000;
    public const int RegionSize = Size / 2;
    /// <summary>Front-end virtual addresses of the two regions; guest-physical ones are 0 and <see cref="RegionSize"/>.</summary>
    public const ulong FrontendLow = 0x7f00_0000_0000, FrontendHigh = 0x7f00_0010_0000;

    private readonly SafeFileHandle _fd;
    private readonly SharpVhost.Memory.MemoryRegion _low, _high;

    public GuestImage()
    {
        _fd = FileDescriptors.CreateMemfd("fuzz-guest", Size);
        _low = SharpVhost.Memory.MemoryRegion.Map(_fd, new RegionDescription(0, RegionSize, FrontendLow, 0));
        _high = SharpVhost.Memory.MemoryRegion.Map(_fd, new RegionDescription(RegionSize, RegionSize, FrontendHigh, RegionSize));
        Memory = GuestMemory.Create([_low, _high], null, 1);
    }

    public GuestMemory Memory { get; }

    /// <summary>Host address of the high region (guest-physical <see cref="RegionSize"/>).</summary>
    public nint HighHost => _high.HostAddress;

    public Span<byte> Low => new((void*)_low.HostAddress, RegionSize);
    public Span<byte> High => new((void*)_high.HostAddress, RegionSize);

    /// <summary>Host address of byte <paramref name="offset"/> of the image (<see cref="Load"/>'s layout).</summary>
    public nint HostOf(int offset) => offset < RegionSize ? _low.HostAddress + offset : _high.HostAddress + (offset - RegionSize);

    /// <summary>Racing mode: flips bytes the image laid out while the device works (see <see cref="Racer"/>).</summary>
    public void Race(ReadOnlySpan<byte> image) => Racer.Arm(image[..Math.Min(image.Length, Size)], HostOf, (ulong)image.Length * 0x9e3779b97f4a7c15 ^ Hash(image));

    private static ulong Hash(ReadOnlySpan<byte> bytes)
    {
        ulong h = 14695981039346656037;
        foreach (byte b in bytes[..Math.Min(bytes.Length, 4096)]) h = (h ^ b) * 1099511628211;
        return h;
    }

    /// <summary>Fills guest memory with <paramref name="image"/> and zeroes the rest.</summary>
    public void Load(ReadOnlySpan<byte> image)
    {
        image = image[..Math.Min(image.Length, Size)];
        var low = image[..Math.Min(image.Length, RegionSize)];
        var high = image.Length > RegionSize ? image[RegionSize..] : default;
        low.CopyTo(Low);
        Low[low.Length..].Clear();
        high.CopyTo(High);
        High[high.Length..].Clear();
    }

    /// <summary>Copies all guest memory into <paramref name="destination"/> (<see cref="Size"/> bytes).</summary>
    public void CopyTo(Span<byte> destination)
    {
        Low.CopyTo(destination);
        High.CopyTo(destination[RegionSize..]);
    }

    /// <summary>Whether guest memory holds exactly <paramref name="bytes"/>.</summary>
    public bool SameAs(ReadOnlySpan<byte> bytes) => Low.SequenceEqual(bytes[..RegionSize]) && High.SequenceEqual(bytes[RegionSize..]);

    /// <summary>
    /// Checks that a popped chain points only into this guest's memory, at the host address its
    /// guest address translates to, and that its byte counts add up.
    /// </summary>
    public void CheckChain(DescriptorChain chain)
    {
        ulong readable = 0, writable = 0;
        for (int i = 0; i < chain.Count; i++)
        {
            var s = chain.Segments[i];
            if (s.Length == 0) throw new FuzzCheckFailedException($"segment {i} of chain {chain.Id} is empty");
            var region = s.GuestAddress < RegionSize ? _low : _high;
            if (s.GuestAddress >= Size || s.Length > (ulong)Size - s.GuestAddress
                || s.GuestAddress - region.GuestPhysicalAddress + s.Length > RegionSize)
                throw new FuzzCheckFailedException($"segment {i} of chain {chain.Id} [{s.GuestAddress:x}, +{s.Length:x}) is outside guest memory or crosses a region");
            nint expected = region.HostAddress + (nint)(s.GuestAddress - region.GuestPhysicalAddress);
            if (s.Host != expected)
                throw new FuzzCheckFailedException($"segment {i} of chain {chain.Id} at {s.GuestAddress:x} maps to {s.Host:x}, not {expected:x}");
            if (s.DeviceWritable) writable += s.Length; else readable += s.Length;
            if (!s.DeviceWritable && i >= chain.ReadableCount) throw new FuzzCheckFailedException($"readable segment {i} after the writable ones");
        }
        if (readable != chain.ReadableBytes || writable != chain.WritableBytes)
            throw new FuzzCheckFailedException($"chain {chain.Id} counts {chain.ReadableBytes}/{chain.WritableBytes} bytes, segments add up to {readable}/{writable}");
    }

    public void Dispose()
    {
        _low.Dispose();
        _high.Dispose();
        _fd.Dispose();
    }
}

/// <summary>
/// The 16-byte prefix of the ring targets' input, followed by the guest memory image.
/// <code>
/// byte 0      queue size: 1 &lt;&lt; (b % 9); with bit 7 set 1 &lt;&lt; (b % 16) (bind checks of big rings)
/// byte 1      bit 0 EVENT_IDX, bit 1 NOTIFY_ON_EMPTY, bit 2 checked accessor (block target only),
///             bit 3 inflight tracking (INFLIGHT_SHMFD) with its region at the start of the high region
/// bytes 2-3   vring base (next avail index)
/// bytes 4-15  descriptor table, avail ring, used ring: u32 offsets from the low region's
///             front-end address (0x100000 and up is the high region)
/// </code>
/// </summary>
public readonly record struct RingSetup(int QueueSize, bool EventIndex, bool NotifyOnEmpty, bool Checked, bool Inflight, ushort Base, RingAddresses Rings)
{
    public const int PrefixSize = 16;

    public static bool TryRead(ReadOnlySpan<byte> input, out RingSetup setup, out ReadOnlySpan<byte> image)
    {
        setup = default;
        image = default;
        if (input.Length < PrefixSize) return false;
        byte sizeByte = input[0];
        int size = (sizeByte & 0x80) != 0 ? 1 << (sizeByte % 16) : 1 << (sizeByte % 9);
        byte flags = input[1];
        var rings = new RingAddresses(
            GuestImage.FrontendLow + BinaryPrimitives.ReadUInt32LittleEndian(input[4..]),
            GuestImage.FrontendLow + BinaryPrimitives.ReadUInt32LittleEndian(input[8..]),
            GuestImage.FrontendLow + BinaryPrimitives.ReadUInt32LittleEndian(input[12..]));
        setup = new RingSetup(size, (flags & 1) != 0, (flags & 2) != 0, (flags & 4) != 0, (flags & 8) != 0, BinaryPrimitives.ReadUInt16LittleEndian(input[2..]), rings);
        image = input[PrefixSize..];
        return true;
    }

    public static byte[] Prefix(int log2Size, byte flags, ushort vringBase, uint desc, uint avail, uint used)
    {
        var b = new byte[PrefixSize];
        b[0] = (byte)log2Size;
        b[1] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), vringBase);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), desc);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), avail);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), used);
        return b;
    }
}

/// <summary>Writes split-ring structures into a guest memory image (for seeds).</summary>
public sealed class ImageBuilder(int size)
{
    public byte[] Image { get; } = new byte[size];

    public ImageBuilder Descriptor(uint table, int index, ulong address, uint length, ushort flags, ushort next)
    {
        var d = Image.AsSpan((int)table + index * 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, address);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
        return this;
    }

    /// <summary>Makes <paramref name="heads"/> available in the avail ring at <paramref name="avail"/>.</summary>
    public ImageBuilder Avail(uint avail, int queueSize, params ushort[] heads)
    {
        for (int i = 0; i < heads.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(Image.AsSpan((int)avail + 4 + 2 * (i % queueSize)), heads[i]);
        BinaryPrimitives.WriteUInt16LittleEndian(Image.AsSpan((int)avail + 2), (ushort)heads.Length);
        return this;
    }

    public ImageBuilder Bytes(uint at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Image.AsSpan((int)at));
        return this;
    }
}
