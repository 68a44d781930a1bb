using SharpVhost.Devices.Net;
using SharpVhost.Virtio;

namespace SharpVhost.Fuzz;

/// <summary>
/// virtio-net header parsing and frame handling over a fuzzed guest memory image: the transmit
/// processor (header flags, GSO type, checksum offsets, frame length against the MTU and the
/// negotiated offloads) or the receive processor (filling the guest's buffers, mergeable or not, with
/// three waiting frames), through a real split queue.
/// <para>Input: byte 0 picks the features the guest accepted (bit 0 CSUM, 1 HOST_TSO4, 2 HOST_TSO6,
/// 3 HOST_ECN, 4 HOST_UFO, 5 MRG_RXBUF, 6 VERSION_1) and the queue (bit 7: receive); then the ring
/// setup and guest image of <see cref="SplitQueueTarget"/>.</para>
/// <para>Oracles: chains lie in guest memory; no used length exceeds a chain's writable bytes; a frame
/// handed to the endpoint has the length its chain holds after the header, and copies out whole.</para>
/// </summary>
public sealed class NetTarget : IFuzzTarget
{
    private const int Budget = 64;
    private GuestImage? _guest;

    public string Name => "net";
    public string Description => "virtio-net header parsing: transmit and receive processors over a fuzzed guest image";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return;
        byte control = input[0];
        if (!RingSetup.TryRead(input[1..], out var setup, out var image)) return;
        if (setup.QueueSize > 256) return;
        _guest ??= new GuestImage();
        _guest.Load(image);

        using var endpoint = new CheckingEndpoint();
        using var device = new NetDevice(endpoint, new NetDeviceOptions { RxBacklog = 4 });
        ulong wanted = Bit(VirtioNet.FeatureCsum, control, 0) | Bit(VirtioNet.FeatureHostTso4, control, 1) | Bit(VirtioNet.FeatureHostTso6, control, 2)
            | Bit(VirtioNet.FeatureHostEcn, control, 3) | Bit(VirtioNet.FeatureHostUfo, control, 4) | Bit(VirtioNet.FeatureMrgRxbuf, control, 5)
            | Bit(VirtioFeatureBits.Version1, control, 6);
        device.OnFeaturesNegotiated(wanted & device.Features);

        bool receive = (control & 0x80) != 0;
        var split = new SplitQueue(receive ? 0 : 1, setup.Checked ? MetadataAccess.Checked : MetadataAccess.Direct)
        {
            EventIndex = setup.EventIndex,
            NotifyOnEmpty = setup.NotifyOnEmpty,
        };
        split.SetSize(setup.QueueSize);
        split.SetRings(setup.Rings);
        split.SetBase(setup.Base);
        var queue = new CheckingQueue(split, _guest);
        _guest.Race(image);
        try { Serve(queue, split, device, receive); }
        finally { Racer.Disarm(wait: false); } // the image stays mapped and is reloaded next run
    }

    private void Serve(CheckingQueue queue, SplitQueue split, NetDevice device, bool receive)
    {
        if (!queue.Attach(_guest!.Memory)) return;

        if (receive)
        {
            var backlog = device.Port.Backlog(0);
            foreach (int length in (ReadOnlySpan<int>)[60, 600, 1514])
            {
                var frame = new byte[length];
                for (int i = 0; i < length; i++) frame[i] = (byte)(i * 7 + length);
                backlog.TryEnqueue(frame);
            }
        }
        var processor = device.CreateProcessor(receive ? 0 : 1);
        try
        {
            int handled = processor.Process(queue, _guest.Memory, Budget);
            if (handled > Budget + 64) throw new FuzzCheckFailedException($"processor used {handled} chains with a budget of {Budget}");
        }
        finally
        {
            (processor as IDisposable)?.Dispose();
        }
        queue.FlushUsed();
        if (Environment.GetEnvironmentVariable("FUZZ_VERBOSE") is not null)
        {
            var c = device.Port.Counters;
            Console.Error.WriteLine($"net: tx {c.TxFrames} frames (bad header {c.TxBadHeader}, short {c.TxTooShort}, long {c.TxTooLong}), rx {c.RxFrames} frames (too small {c.RxBufferTooSmall}, bad buffer {c.RxBadBuffer}), broken: {split.BrokenReason}");
        }
    }

    private static ulong Bit(int feature, byte control, int controlBit) => (control & (1 << controlBit)) != 0 ? 1ul << feature : 0;

    /// <summary>Takes every frame the guest sends and checks it is whole; offers every offload so the guest may negotiate them.</summary>
    private sealed class CheckingEndpoint : NetEndpoint
    {
        private readonly byte[] _copy = new byte[VirtioNet.MaxGsoFrameLength];

        public override string Description => "fuzz";

        public override ulong OffloadFeatures =>
            (1ul << VirtioNet.FeatureCsum) | (1ul << VirtioNet.FeatureGuestCsum) | (1ul << VirtioNet.FeatureHostTso4)
            | (1ul << VirtioNet.FeatureHostTso6) | (1ul << VirtioNet.FeatureHostEcn) | (1ul << VirtioNet.FeatureHostUfo);

        public override bool Transmit(int pair, in TxFrame frame)
        {
            if (frame.Length < VirtioNet.EthernetHeaderSize || frame.Length > VirtioNet.MaxGsoFrameLength)
                throw new FuzzCheckFailedException($"endpoint got a frame of {frame.Length} bytes");
            if (frame.Chain is { } chain && frame.HeaderSize + (long)frame.Length != chain.ReadableBytes)
                throw new FuzzCheckFailedException($"frame of {frame.Length} bytes after a {frame.HeaderSize}-byte header in a chain of {chain.ReadableBytes} readable bytes");
            int copied = frame.CopyTo(_copy);
            if (copied != frame.Length) throw new FuzzCheckFailedException($"frame of {frame.Length} bytes copied out as {copied}");
            _ = frame.ReadAddresses();
            return true;
        }
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        const int log2 = 4, size = 1 << log2;
        const uint desc = 0, avail = 0x1000, used = 0x2000;
        const ushort next = VirtqDescriptor.FlagNext, write = VirtqDescriptor.FlagWrite;
        byte[] Input(byte control, ImageBuilder image)
        {
            byte[] bytes = [control, .. RingSetup.Prefix(log2, 0, 0, desc, avail, used), .. image.Image];
            int end = bytes.Length;
            while (end > 1 + RingSetup.PrefixSize && bytes[end - 1] == 0) end--;
            return bytes[..end];
        }
        byte[] Frame(int length, byte flags = 0, byte gso = 0, ushort gsoSize = 0, ushort csumStart = 0, ushort csumOffset = 0)
        {
            var b = new byte[VirtioNet.HeaderSize + length];
            new VirtioNetHeader(flags, gso, 0, gsoSize, csumStart, csumOffset).Write(b, VirtioNet.HeaderSize);
            for (int i = 0; i < length; i++) b[VirtioNet.HeaderSize + i] = (byte)(i < 6 ? 0xff : i);
            return b;
        }
        const byte version1 = 1 << 6, csum = 1, tso4 = 2, mergeable = 1 << 5, rx = 0x80;

        // Transmit: header and frame in one buffer; in two (header apart); with checksum offload; a TSO frame.
        yield return ("tx-one-buffer", Input(version1, new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, VirtioNet.HeaderSize + 60, 0, 0).Bytes(0x4000, Frame(60)).Avail(avail, size, 0)));
        yield return ("tx-header-apart", Input(version1, new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, VirtioNet.HeaderSize, next, 1).Descriptor(desc, 1, 0x4100, 1514, 0, 0)
            .Bytes(0x4000, Frame(0)).Bytes(0x4100, Frame(1514).AsSpan(VirtioNet.HeaderSize)).Avail(avail, size, 0)));
        yield return ("tx-csum", Input(version1 | csum, new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, VirtioNet.HeaderSize + 60, 0, 0)
            .Bytes(0x4000, Frame(60, VirtioNet.HeaderNeedsCsum, 0, 0, 34, 16)).Avail(avail, size, 0)));
        yield return ("tx-tso4", Input(version1 | csum | tso4, new ImageBuilder(0x7000)
            .Descriptor(desc, 0, 0x4000, VirtioNet.HeaderSize + 9000, 0, 0)
            .Bytes(0x4000, Frame(9000, VirtioNet.HeaderNeedsCsum, VirtioNet.GsoTcpV4, 1448, 34, 16)).Avail(avail, size, 0)));
        yield return ("tx-legacy-header", Input(0, new ImageBuilder(0x5000)
            .Descriptor(desc, 0, 0x4000, VirtioNet.LegacyHeaderSize + 60, 0, 0).Bytes(0x4002, Frame(60).AsSpan(2)).Avail(avail, size, 0)));

        // Receive: four 2 KiB buffers; mergeable small buffers that each frame spreads over.
        var rxBig = new ImageBuilder(0x3000);
        for (int i = 0; i < 4; i++) rxBig.Descriptor(desc, i, 0x4000 + (uint)i * 0x800, 0x800, write, 0);
        yield return ("rx-big-buffers", Input((byte)(rx | version1), rxBig.Avail(avail, size, 0, 1, 2, 3)));
        var rxSmall = new ImageBuilder(0x3000);
        var heads = new ushort[12];
        for (int i = 0; i < heads.Length; i++) { rxSmall.Descriptor(desc, i, 0x4000 + (uint)i * 0x200, 0x200, write, 0); heads[i] = (ushort)i; }
        yield return ("rx-mergeable", Input((byte)(rx | version1 | mergeable), rxSmall.Avail(avail, size, heads)));
        // A receive buffer too small for a header, and one that is device-readable only.
        yield return ("rx-tiny-buffers", Input((byte)(rx | version1), new ImageBuilder(0x3000)
            .Descriptor(desc, 0, 0x4000, 4, write, 0).Descriptor(desc, 1, 0x4100, 0x800, 0, 0).Avail(avail, size, 0, 1)));
    }
}
