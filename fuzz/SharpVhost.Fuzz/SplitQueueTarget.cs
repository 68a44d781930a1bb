using SharpVhost.Virtio;

namespace SharpVhost.Fuzz;

/// <summary>
/// Split-ring descriptor-chain walking over a fuzzed guest memory image: avail ring, descriptor
/// table, NEXT links, indirect tables, buffers straddling two regions, used ring and notification
/// suppression. Input: a <see cref="RingSetup"/> prefix, then the guest memory image.
/// <para>Oracles: every popped segment lies in guest memory at the host address its guest address
/// translates to; and the direct accessor (pointers validated once) and the checked accessor
/// (translate per access) pop the same chains, break on the same inputs and leave guest memory
/// byte for byte the same. With inflight tracking on, the tracker's region (hostile too: the front-end
/// keeps it) is recovered at bind and updated on every pop and publish.</para>
/// </summary>
public sealed class SplitQueueTarget() : RingWalkTarget("splitqueue",
    "split virtqueue: descriptor chains over a fuzzed guest memory image (direct vs checked accessor)")
{
    protected override IDeviceQueue CreateQueue(MetadataAccess access) => new SplitQueue(0, access);

    protected override int QueueSize(byte sizeByte) => (sizeByte & 0x80) != 0 ? 1 << (sizeByte % 16) : 1 << (sizeByte % 9);

    protected override void AttachInflight(IDeviceQueue queue, nint region)
    {
        if (SplitInflightTracker.RegionSize(queue.Size) <= GuestImage.RegionSize)
            ((SplitQueue)queue).Inflight = new SplitInflightTracker(region, queue.Size);
    }

    public override IEnumerable<(string Name, byte[] Data)> Seeds() => RingSeeds.All();
}

/// <summary>
/// Packed-ring descriptor-chain walking over a fuzzed guest memory image: availability by wrap
/// counter, buffer ids, chains, indirect tables, used descriptors written back in place, event
/// suppression. Same input layout and oracles as <see cref="SplitQueueTarget"/>, except that byte 0
/// gives any queue size from 1 to 128 (packed rings need not be a power of two; with bit 7 set,
/// 1 &lt;&lt; (b % 16)), and the three ring addresses are the descriptor ring, the driver area and
/// the device area.
/// </summary>
public sealed class PackedQueueTarget() : RingWalkTarget("packedqueue",
    "packed virtqueue: descriptor chains over a fuzzed guest memory image (direct vs checked accessor)")
{
    protected override IDeviceQueue CreateQueue(MetadataAccess access) => new PackedQueue(0, access);

    protected override int QueueSize(byte sizeByte) => (sizeByte & 0x80) != 0 ? 1 << (sizeByte % 16) : 1 + (sizeByte & 0x7f);

    protected override void AttachInflight(IDeviceQueue queue, nint region)
    {
        if (PackedInflightTracker.RegionSize(queue.Size) <= GuestImage.RegionSize)
            ((PackedQueue)queue).Inflight = new PackedInflightTracker(region, queue.Size);
    }

    public override IEnumerable<(string Name, byte[] Data)> Seeds() => PackedRingSeeds.All();
}

/// <summary>The shared harness of the ring targets: one run per accessor, then compare.</summary>
public abstract class RingWalkTarget(string name, string description) : IFuzzTarget
{
    /// <summary>Chains popped per run: a worker's batch.</summary>
    private const int Budget = 64;

    private GuestImage? _guest;
    private readonly DescriptorChain _chain = new();
    private readonly byte[] _afterChecked = new byte[GuestImage.Size];

    public string Name => name;
    public string Description => description;

    protected abstract IDeviceQueue CreateQueue(MetadataAccess access);
    protected abstract int QueueSize(byte sizeByte);
    protected abstract void AttachInflight(IDeviceQueue queue, nint region);
    public abstract IEnumerable<(string Name, byte[] Data)> Seeds();

    public void Run(ReadOnlySpan<byte> input)
    {
        if (!RingSetup.TryRead(input, out var setup, out var image)) return;
        setup = setup with { QueueSize = QueueSize(input[0]) };
        _guest ??= new GuestImage();
        var viaChecked = Walk(setup, image, MetadataAccess.Checked);
        _guest.CopyTo(_afterChecked);
        var viaDirect = Walk(setup, image, MetadataAccess.Direct);
        if (Environment.GetEnvironmentVariable("FUZZ_VERBOSE") is not null) Console.Error.WriteLine($"{Name}: {viaChecked}");
        if (Racer.Enabled) return; // racing: each walk saw other values, so the two need not agree
        if (viaChecked != viaDirect)
            throw new FuzzCheckFailedException($"accessors disagree: checked {viaChecked}, direct {viaDirect}");
        if (!_guest.SameAs(_afterChecked))
            throw new FuzzCheckFailedException("accessors disagree: guest memory differs after the checked and the direct run");
    }

    /// <summary>What one accessor did with the input: enough to tell two runs apart.</summary>
    private readonly record struct Outcome(bool Broken, int Popped, ulong ChainHash, uint Base, bool Interrupt, bool MoreWork);

    private Outcome Walk(in RingSetup setup, ReadOnlySpan<byte> image, MetadataAccess access)
    {
        var guest = _guest!;
        guest.Load(image);
        var queue = CreateQueue(access);
        queue.EventIndex = setup.EventIndex;
        queue.NotifyOnEmpty = setup.NotifyOnEmpty;
        queue.SetSize(setup.QueueSize);
        queue.SetRings(setup.Rings);
        queue.SetBase(setup.Base);
        if (setup.Inflight && setup.QueueSize <= 256) AttachInflight(queue, guest.HighHost);
        guest.Race(image);
        try { return Walk(queue, setup); }
        finally { Racer.Disarm(wait: false); } // the image stays mapped and is reloaded next run
    }

    private Outcome Walk(IDeviceQueue queue, in RingSetup setup)
    {
        var guest = _guest!;
        int popped = 0;
        ulong chains = 14695981039346656037;
        bool interrupt = false, more = false;
        if (queue.Attach(guest.Memory))
        {
            queue.DisableKicks();
            int budget = setup.QueueSize > 256 ? 8 : Budget;
            while (popped < budget && queue.TryPop(_chain))
            {
                popped++;
                guest.CheckChain(_chain);
                chains = Mix(chains, _chain.Id, (ulong)_chain.Count, _chain.ReadableBytes, _chain.WritableBytes, (ulong)_chain.DescriptorCount);
                foreach (var s in _chain.Segments) chains = Mix(chains, s.GuestAddress, s.Length, s.DeviceWritable ? 1UL : 0, 0, 0);
                // Complete every other chain at once, the rest in a batch: both used-ring paths.
                queue.AddUsed(_chain, _chain.WritableBytes / 2);
                if ((popped & 1) == 0) queue.FlushUsed();
            }
            queue.FlushUsed();
            interrupt = queue.ShouldInterrupt();
            more = queue.EnableKicks();
        }
        if (Environment.GetEnvironmentVariable("FUZZ_VERBOSE") is not null && queue.IsBroken) Console.Error.WriteLine($"{Name} {queue.Access}: broken: {queue.BrokenReason}");
        if (queue is PackedQueue packed && !packed.IsBroken && (packed.NextAvail >= setup.QueueSize || packed.NextUsed >= setup.QueueSize))
            throw new FuzzCheckFailedException($"packed positions left the ring: avail {packed.NextAvail}, used {packed.NextUsed}, size {setup.QueueSize}");
        return new Outcome(queue.IsBroken, popped, chains, queue.GetBase(), interrupt, more);
    }

    private static ulong Mix(ulong h, ulong a, ulong b, ulong c, ulong d, ulong e)
    {
        foreach (ulong v in (ReadOnlySpan<ulong>)[a, b, c, d, e]) h = (h ^ v) * 1099511628211;
        return h;
    }

}

/// <summary>Guest images with valid (and a few classic hostile) descriptor chains, shared by the ring targets.</summary>
public static class RingSeeds
{
    // Layout of the seeds: rings in the low region, buffers from 0x4000 on, some in the high region.
    private const uint Desc = 0x0, Avail = 0x1000, Used = 0x2000;
    private const ushort Next = VirtqDescriptor.FlagNext, Write = VirtqDescriptor.FlagWrite, Indirect = VirtqDescriptor.FlagIndirect;

    private static byte[] Input(int log2Size, byte flags, ImageBuilder image, ushort vringBase = 0, uint used = Used)
        => [.. RingSetup.Prefix(log2Size, flags, vringBase, Desc, Avail, used), .. image.Image];

    /// <summary>Trims trailing zeros: seeds stay small, the target zero-fills the rest.</summary>
    private static byte[] Trim(byte[] input)
    {
        int end = input.Length;
        while (end > RingSetup.PrefixSize && input[end - 1] == 0) end--;
        return input[..end];
    }

    public static IEnumerable<(string Name, byte[] Data)> All()
    {
        const int log2 = 4, size = 1 << log2;
        // A block read: header (readable), data and status (writable), as virtio-blk lays it out.
        var readRequest = new ImageBuilder(0x5000)
            .Descriptor(Desc, 0, 0x4000, 16, Next, 1)
            .Descriptor(Desc, 1, 0x4100, 512, Next | Write, 2)
            .Descriptor(Desc, 2, 0x4400, 1, Write, 0)
            .Avail(Avail, size, 0);
        yield return ("three-descriptors", Trim(Input(log2, 0, readRequest)));
        yield return ("three-descriptors-event-idx", Trim(Input(log2, 1, readRequest)));
        yield return ("three-descriptors-notify-on-empty", Trim(Input(log2, 2, readRequest)));
        yield return ("three-descriptors-inflight", Trim(Input(log2, 8, readRequest)));
        // A reconnect with one request still in flight: head 0 recorded in the inflight region.
        var inflight = new ImageBuilder(0x8000 + 16 + 16 * size)
            .Descriptor(Desc, 0, 0x4000, 16, Next, 1)
            .Descriptor(Desc, 1, 0x4100, 512, Next | Write, 2)
            .Descriptor(Desc, 2, 0x4400, 1, Write, 0)
            .Avail(Avail, size, 0)
            .Bytes(0x8000 + 8, [1, 0, size, 0]) // version 1, desc_num
            .Bytes(0x8000 + 16, [1, 0, 0, 0, 0, 0, 0, 0, 7]); // head 0 in flight, counter 7
        yield return ("inflight-resubmit", Trim(Input(log2, 8, inflight)));

        // Two chains, then an indirect one.
        var several = new ImageBuilder(0x5000)
            .Descriptor(Desc, 0, 0x4000, 64, 0, 0)
            .Descriptor(Desc, 1, 0x4040, 64, Write, 0)
            .Descriptor(Desc, 2, 0x3000, 3 * 16, Indirect, 0)
            .Descriptor(0x3000, 0, 0x4100, 16, Next, 1)
            .Descriptor(0x3000, 1, 0x4200, 256, Next | Write, 2)
            .Descriptor(0x3000, 2, 0x4300, 1, Write, 0)
            .Avail(Avail, size, 0, 1, 2);
        yield return ("indirect", Trim(Input(log2, 0, several)));

        // A buffer that straddles the two guest-physical regions (split into two segments).
        var straddle = new ImageBuilder(0x3000)
            .Descriptor(Desc, 0, 0x7f00, 0x200, Write, 0)
            .Avail(Avail, size, 0);
        yield return ("straddling-buffer", Trim(Input(log2, 0, straddle)));

        // Rings in the high region (front-end address 0x100000 and up), buffers in the low one.
        var high = new ImageBuilder(0x10000)
            .Descriptor(0x8000, 0, 0x4000, 32, Write, 0)
            .Avail(0x9000, size, 0);
        yield return ("rings-in-high-region", Trim([.. RingSetup.Prefix(log2, 0, 0, 0x100000, 0x101000, 0x102000), .. high.Image]));

        // Resuming at a non-zero base with the ring wrapped.
        var wrapped = new ImageBuilder(0x5000)
            .Descriptor(Desc, 3, 0x4000, 8, 0, 0)
            .Bytes(Avail + 2, [0x02, 0x00]) // avail.idx 2 (wrapped from 0xffff)
            .Bytes(Avail + 4 + 2 * 15, [3, 0]) // slot 0xffff & 15
            .Bytes(Avail + 4, [3, 0]) // slot 0
            .Bytes(Avail + 4 + 2, [3, 0]); // slot 1
        yield return ("wrapped-base", Trim(Input(log2, 0, wrapped, vringBase: 0xffff)));

        // Hostile classics: a NEXT loop, a self-referencing indirect table, a descriptor past memory.
        var loop = new ImageBuilder(0x3000)
            .Descriptor(Desc, 0, 0x4000, 8, Next, 1)
            .Descriptor(Desc, 1, 0x4000, 8, Next, 0)
            .Avail(Avail, size, 0);
        yield return ("next-loop", Trim(Input(log2, 0, loop)));
        var selfIndirect = new ImageBuilder(0x3100)
            .Descriptor(Desc, 0, 0x3000, 32, Indirect, 0)
            .Descriptor(0x3000, 0, 0x3000, 32, Indirect, 0)
            .Descriptor(0x3000, 1, 0x3000, 32, Next, 0)
            .Avail(Avail, size, 0);
        yield return ("self-indirect", Trim(Input(log2, 0, selfIndirect)));
        var pastMemory = new ImageBuilder(0x3000)
            .Descriptor(Desc, 0, 0xfff0, 0x100, Write, 0)
            .Avail(Avail, size, 0);
        yield return ("past-memory", Trim(Input(log2, 0, pastMemory)));
        yield return ("queue-too-big", Trim(Input(0x80 | 15, 0, readRequest)));
    }
}

/// <summary>Guest images with packed rings: valid chains, a wrap, indirect tables, and hostile ones.</summary>
public static class PackedRingSeeds
{
    private const uint Desc = 0x0, Driver = 0x1000, Device = 0x2000;
    private const ushort Next = VirtqDescriptor.FlagNext, Write = VirtqDescriptor.FlagWrite, Indirect = VirtqDescriptor.FlagIndirect;
    /// <summary>Flags that make a descriptor available in the first lap (wrap counter 1), and in the second.</summary>
    private const ushort Lap1 = PackedRingLayout.FlagAvail, Lap2 = PackedRingLayout.FlagUsed;
    private const byte Size16 = 15; // size byte for a 16-entry ring

    private static ImageBuilder Packed(this ImageBuilder image, uint ring, int slot, ulong address, uint length, ushort id, ushort flags)
    {
        var d = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(d, address);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), length);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(12), id);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(14), flags);
        return image.Bytes(ring + (uint)slot * 16, d);
    }

    private static byte[] Input(byte sizeByte, byte flags, ImageBuilder image, ushort vringBase = 0x8000)
    {
        byte[] input = [.. RingSetup.Prefix(sizeByte, flags, vringBase, Desc, Driver, Device), .. image.Image];
        int end = input.Length;
        while (end > RingSetup.PrefixSize && input[end - 1] == 0) end--;
        return input[..end];
    }

    public static IEnumerable<(string Name, byte[] Data)> All()
    {
        // vring base: bit 15 is the driver's wrap counter (1 at the start).
        var read = new ImageBuilder(0x5000)
            .Packed(Desc, 0, 0x4000, 16, 0, Next | Lap1)
            .Packed(Desc, 1, 0x4100, 512, 0, Next | Write | Lap1)
            .Packed(Desc, 2, 0x4400, 1, 0, Write | Lap1);
        yield return ("three-descriptors", Input(Size16, 0, read));
        yield return ("three-descriptors-event-idx", Input(Size16, 1, read));
        yield return ("three-descriptors-inflight", Input(Size16, 8, read));

        var several = new ImageBuilder(0x5000)
            .Packed(Desc, 0, 0x4000, 64, 5, Lap1)
            .Packed(Desc, 1, 0x4040, 64, 6, Write | Lap1)
            .Packed(Desc, 2, 0x3000, 3 * 16, 7, Indirect | Lap1)
            .Packed(0x3000, 0, 0x4100, 16, 0, 0)
            .Packed(0x3000, 1, 0x4200, 256, 0, Write)
            .Packed(0x3000, 2, 0x4300, 1, 0, Write);
        yield return ("two-chains-and-indirect", Input(Size16, 0, several));

        // A chain that wraps: slots 15 (first lap) and 0 (second lap), starting at position 15.
        var wrapped = new ImageBuilder(0x5000)
            .Packed(Desc, 15, 0x4000, 16, 3, Next | Lap1)
            .Packed(Desc, 0, 0x4100, 1, 3, Write | Lap2)
            .Packed(Desc, 1, 0, 0, 0, Lap1 | Lap2); // used in the first lap: not available in the second
        yield return ("wrapping-chain", Input(Size16, 0, wrapped, vringBase: 0x8000 | 15));

        // A reconnect with one buffer in flight: id 0 (one descriptor) recorded in the inflight region
        // at the high region's start (image offset 0x8000): header, id entry, the descriptor's copy.
        const int regionAt = 0x8000, copies = regionAt + 16 + 16 * 16;
        var resubmit = new ImageBuilder(0x8000 + 16 + 40 * 16)
            .Packed(Desc, 0, 0x4000, 16, 0, Write | Lap1)
            .Bytes(regionAt + 8, [0x02, 0x50, 16, 0, 0x00, 0x80]) // version 0x5002, desc_num 16, used 0 in lap 1
            .Bytes(regionAt + 16, [1, 0, 1, 0, 0, 0, 0, 0, 7]) // id 0 in flight: 1 descriptor from copy 0, counter 7
            .Packed((uint)copies, 0, 0x4000, 16, 0, Write | Lap1);
        yield return ("inflight-resubmit", Input(Size16, 8, resubmit));

        // A buffer straddling the two guest-physical regions; a 13-entry ring (not a power of two).
        var straddle = new ImageBuilder(0x3000).Packed(Desc, 0, 0x7f00, 0x200, 1, Write | Lap1);
        yield return ("straddling-buffer", Input(Size16, 0, straddle));
        yield return ("thirteen-entries", Input(12, 0, read));

        // Hostile: a chain that never ends, an id past the ring, an indirect table inside an indirect
        // table (a packed table's flags other than WRITE are ignored), a zeroed ring in the second lap.
        var endless = new ImageBuilder(0x3000);
        for (int i = 0; i < 16; i++) endless.Packed(Desc, i, 0x4000, 8, 0, Next | Lap1);
        yield return ("endless-chain", Input(Size16, 0, endless));
        yield return ("id-past-ring", Input(Size16, 0, new ImageBuilder(0x3000).Packed(Desc, 0, 0x4000, 8, 999, Lap1)));
        var nested = new ImageBuilder(0x3100)
            .Packed(Desc, 0, 0x3000, 32, 0, Indirect | Lap1)
            .Packed(0x3000, 0, 0x3000, 32, 0, Indirect)
            .Packed(0x3000, 1, 0x4000, 8, 0, 0);
        yield return ("nested-indirect", Input(Size16, 0, nested));
        yield return ("second-lap-zeroed", Input(Size16, 0, new ImageBuilder(0x100), vringBase: 0));
    }
}
