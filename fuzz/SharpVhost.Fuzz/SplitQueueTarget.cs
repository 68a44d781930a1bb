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
public sealed class SplitQueueTarget : IFuzzTarget
{
    /// <summary>Chains popped per run: a worker's batch.</summary>
    private const int Budget = 64;

    private GuestImage? _guest;
    private readonly DescriptorChain _chain = new();
    private readonly byte[] _afterChecked = new byte[GuestImage.Size];

    public string Name => "splitqueue";
    public string Description => "split virtqueue: descriptor chains over a fuzzed guest memory image (direct vs checked accessor)";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (!RingSetup.TryRead(input, out var setup, out var image)) return;
        _guest ??= new GuestImage();
        var viaChecked = Walk(setup, image, MetadataAccess.Checked);
        _guest.CopyTo(_afterChecked);
        var viaDirect = Walk(setup, image, MetadataAccess.Direct);
        if (viaChecked != viaDirect)
            throw new FuzzCheckFailedException($"accessors disagree: checked {viaChecked}, direct {viaDirect}");
        if (!_guest.SameAs(_afterChecked))
            throw new FuzzCheckFailedException("accessors disagree: guest memory differs after the checked and the direct run");
    }

    /// <summary>What one accessor did with the input: enough to tell two runs apart.</summary>
    private readonly record struct Outcome(bool Broken, int Popped, ulong ChainHash, ushort LastAvail, ushort UsedIndex, bool Interrupt, bool MoreWork);

    private Outcome Walk(in RingSetup setup, ReadOnlySpan<byte> image, MetadataAccess access)
    {
        var guest = _guest!;
        guest.Load(image);
        var queue = new SplitQueue(0, access) { EventIndex = setup.EventIndex, NotifyOnEmpty = setup.NotifyOnEmpty };
        queue.SetSize(setup.QueueSize);
        queue.SetRings(setup.Rings);
        queue.SetBase(setup.Base);
        if (setup.Inflight && setup.QueueSize <= 256) queue.Inflight = new SplitInflightTracker(guest.HighHost, setup.QueueSize);
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
        return new Outcome(queue.IsBroken, popped, chains, queue.LastAvailIndex, queue.UsedIndex, interrupt, more);
    }

    private static ulong Mix(ulong h, ulong a, ulong b, ulong c, ulong d, ulong e)
    {
        foreach (ulong v in (ReadOnlySpan<ulong>)[a, b, c, d, e]) h = (h ^ v) * 1099511628211;
        return h;
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds() => RingSeeds.All();
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
