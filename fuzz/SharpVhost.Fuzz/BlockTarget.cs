using System.Buffers.Binary;
using SharpVhost.Devices.Block;
using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Fuzz;

/// <summary>
/// virtio-blk request parsing: the block device's queue processor over a fuzzed guest memory image
/// (same input layout as <see cref="SplitQueueTarget"/>), on a small RAM disk.
/// <para>Oracles: every popped chain lies in guest memory; the length the device reports as written
/// never exceeds the chain's writable bytes; the processor never handles more chains than its budget.</para>
/// </summary>
public sealed class BlockTarget : IFuzzTarget
{
    private const int Budget = 64;
    private const long DiskSize = 64 * 1024;

    private GuestImage? _guest;

    public string Name => "blk";
    public string Description => "virtio-blk request parsing (read, write, flush, get-id, discard, write-zeroes) over a fuzzed guest image";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (!RingSetup.TryRead(input, out var setup, out var image)) return;
        if (setup.QueueSize > 256) return; // ring binding of big queues is the splitqueue target's business
        _guest ??= new GuestImage();
        _guest.Load(image);
        using var storage = new RamStorage(DiskSize);
        var device = new BlockDevice(storage, new BlockDeviceOptions { MaxDiscardSectors = 64, MaxDiscardSegments = 4 });
        var processor = device.CreateProcessor(0);
        var split = new SplitQueue(0, setup.Checked ? MetadataAccess.Checked : MetadataAccess.Direct)
        {
            EventIndex = setup.EventIndex,
            NotifyOnEmpty = setup.NotifyOnEmpty,
        };
        split.SetSize(setup.QueueSize);
        split.SetRings(setup.Rings);
        split.SetBase(setup.Base);
        var queue = new CheckingQueue(split, _guest);
        _guest.Race(image);
        try
        {
            if (!queue.Attach(_guest.Memory)) return;
            int handled = processor.Process(queue, _guest.Memory, Budget);
            if (handled > Budget || handled != queue.Completed)
                throw new FuzzCheckFailedException($"processor handled {handled} chains, completed {queue.Completed}, budget {Budget}");
            queue.FlushUsed();
        }
        finally { Racer.Disarm(wait: false); } // the image stays mapped and is reloaded next run
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        const int log2 = 4, size = 1 << log2;
        const uint desc = 0, avail = 0x1000, used = 0x2000;
        const ushort next = VirtqDescriptor.FlagNext, write = VirtqDescriptor.FlagWrite;

        static byte[] Header(uint type, ulong sector)
        {
            var h = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(h, type);
            BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), sector);
            return h;
        }
        static byte[] Segment(ulong sector, uint sectors, uint flags)
        {
            var s = new byte[16];
            BinaryPrimitives.WriteUInt64LittleEndian(s, sector);
            BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(8), sectors);
            BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(12), flags);
            return s;
        }
        static byte[] Input(ImageBuilder image) =>
            Trim([.. RingSetup.Prefix(log2, 0, 0, desc, avail, used), .. image.Image]);

        // Data requests: header, data, status.
        foreach (var (name, type, dataFlags) in new[] { ("read", VirtioBlk.TypeIn, next | write), ("write", VirtioBlk.TypeOut, (int)next) })
        {
            var image = new ImageBuilder(0x5000)
                .Descriptor(desc, 0, 0x4000, 16, next, 1)
                .Descriptor(desc, 1, 0x4200, 1024, (ushort)dataFlags, 2)
                .Descriptor(desc, 2, 0x4800, 1, write, 0)
                .Bytes(0x4000, Header(type, 2))
                .Avail(avail, size, 0);
            yield return (name, Input(image));
        }
        // Requests without data: flush; get-id (20 bytes back).
        var flush = new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, 16, next, 1)
            .Descriptor(desc, 1, 0x4800, 1, write, 0)
            .Bytes(0x4000, Header(VirtioBlk.TypeFlush, 0))
            .Avail(avail, size, 0);
        yield return ("flush", Input(flush));
        var getId = new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, 16, next, 1)
            .Descriptor(desc, 1, 0x4200, 21, write, 0)
            .Bytes(0x4000, Header(VirtioBlk.TypeGetId, 0))
            .Avail(avail, size, 0);
        yield return ("get-id", Input(getId));
        // Discard and write-zeroes with two segments each.
        foreach (var (name, type, flags) in new[] { ("discard", VirtioBlk.TypeDiscard, 0u), ("write-zeroes", VirtioBlk.TypeWriteZeroes, VirtioBlk.WriteZeroesUnmap) })
        {
            var image = new ImageBuilder(0x5000)
                .Descriptor(desc, 0, 0x4000, 48, next, 1)
                .Descriptor(desc, 1, 0x4800, 1, write, 0)
                .Bytes(0x4000, [.. Header(type, 0), .. Segment(0, 8, flags), .. Segment(16, 4, 0)])
                .Avail(avail, size, 0);
            yield return (name, Input(image));
        }
        // A read whose data straddles the two regions, and a batch of all of them at once.
        var straddle = new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, 16, next, 1)
            .Descriptor(desc, 1, 0x7e00, 1024, next | write, 2)
            .Descriptor(desc, 2, 0x4800, 1, write, 0)
            .Bytes(0x4000, Header(VirtioBlk.TypeIn, 0))
            .Avail(avail, size, 0);
        yield return ("read-straddling", Input(straddle));
        var batch = new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, 16, next, 1).Descriptor(desc, 1, 0x4200, 512, next | write, 2).Descriptor(desc, 2, 0x4800, 1, write, 0)
            .Descriptor(desc, 3, 0x4010, 16, next, 4).Descriptor(desc, 4, 0x4400, 512, next, 5).Descriptor(desc, 5, 0x4801, 1, write, 0)
            .Descriptor(desc, 6, 0x4020, 16, next, 7).Descriptor(desc, 7, 0x4802, 1, write, 0)
            .Bytes(0x4000, Header(VirtioBlk.TypeIn, 1)).Bytes(0x4010, Header(VirtioBlk.TypeOut, 3)).Bytes(0x4020, Header(VirtioBlk.TypeFlush, 0))
            .Avail(avail, size, 0, 3, 6);
        yield return ("batch", Input(batch));
    }

    private static byte[] Trim(byte[] input)
    {
        int end = input.Length;
        while (end > RingSetup.PrefixSize && input[end - 1] == 0) end--;
        return input[..end];
    }
}
