using SharpVhost.Interop;

namespace SharpVhost.Devices.Net.Endpoints;

/// <summary>
/// Connects a port to a Linux TAP interface so the guest reaches the host. The TAP carries virtio-net
/// headers, so checksum and segmentation offloads pass straight through: the guest may send
/// unfinished checksums and 64 KiB TSO frames, and receive them when it negotiated that. Transmit
/// writes the guest's header and frame with one gathered write from guest memory (no copy); receive
/// reads on the receive queue's worker, one TAP queue per queue pair.
/// </summary>
public sealed class TapEndpoint : NetEndpoint
{
    private readonly Tun[] _queues;
    [ThreadStatic] private static IoVector[]? t_pieces;

    public string InterfaceName { get; }
    public override string Description => $"TAP {InterfaceName}";

    public override ulong OffloadFeatures => Bits(VirtioNet.FeatureCsum, VirtioNet.FeatureGuestCsum, VirtioNet.FeatureHostTso4, VirtioNet.FeatureHostTso6,
        VirtioNet.FeatureHostEcn, VirtioNet.FeatureGuestTso4, VirtioNet.FeatureGuestTso6, VirtioNet.FeatureGuestEcn);
    public override bool ReceivesLargeFrames => true;

    public TapEndpoint(string name, int queuePairs = 1)
    {
        _queues = new Tun[queuePairs];
        try
        {
            for (int i = 0; i < queuePairs; i++) _queues[i] = Tun.Open(name, multiQueue: queuePairs > 1);
        }
        catch
        {
            foreach (var q in _queues) q?.Dispose();
            throw;
        }
        InterfaceName = _queues[0].Name;
        foreach (var q in _queues) q.SetVnetHeaderSize(VirtioNet.HeaderSize);
    }

    private static ulong Bits(params int[] bits) => bits.Aggregate(0ul, (a, b) => a | (1ul << b));

    public override void OnFeaturesNegotiated(ulong features)
    {
        // The TAP must hand us only what the guest can take; and its header has the guest's size.
        bool Has(int bit) => (features & (1ul << bit)) != 0;
        uint offload = 0;
        if (Has(VirtioNet.FeatureGuestCsum))
        {
            offload |= Tun.OffloadCsum;
            if (Has(VirtioNet.FeatureGuestTso4)) offload |= Tun.OffloadTso4;
            if (Has(VirtioNet.FeatureGuestTso6)) offload |= Tun.OffloadTso6;
            if (Has(VirtioNet.FeatureGuestEcn) && (offload & (Tun.OffloadTso4 | Tun.OffloadTso6)) != 0) offload |= Tun.OffloadTsoEcn;
        }
        foreach (var q in _queues)
        {
            q.SetVnetHeaderSize(Port.HeaderSize);
            q.SetOffload(offload);
        }
    }

    public override bool Transmit(int pair, in TxFrame frame)
    {
        var tun = _queues[pair];
        if (frame.Chain is not { } chain)
        {
            Span<byte> bytes = stackalloc byte[VirtioNet.HeaderSize + frame.Length];
            frame.Header.Write(bytes, Port.HeaderSize);
            frame.CopyTo(bytes[Port.HeaderSize..]);
            return tun.Write(bytes[..(Port.HeaderSize + frame.Length)]);
        }
        // The chain's readable bytes are exactly header + frame, already in the TAP's format.
        var readable = chain.Readable;
        var pieces = t_pieces ??= new IoVector[64];
        if (pieces.Length < readable.Length) pieces = t_pieces = new IoVector[readable.Length];
        for (int i = 0; i < readable.Length; i++) pieces[i] = new IoVector(readable[i].Host, readable[i].Length);
        return tun.Write(pieces.AsSpan(0, readable.Length));
    }

    public override IRxFrameSource CreateRxSource(int pair) => new TapReader(this, _queues[pair]);

    public override void Dispose()
    {
        foreach (var q in _queues) q.Dispose();
    }

    /// <summary>Reads frames from one TAP queue on the receive worker; the TAP descriptor is the wake descriptor.</summary>
    private sealed class TapReader(TapEndpoint owner, Tun tun) : IRxFrameSource
    {
        private readonly byte[] _buffer = new byte[VirtioNet.HeaderSize + VirtioNet.MaxGsoFrameLength];
        private int _length;

        public int WakeFd => tun.Fd;

        public bool TryPeek(out VirtioNetHeader header, out ReadOnlySpan<byte> frame)
        {
            int headerSize = owner.Port.HeaderSize;
            while (_length == 0)
            {
                int n = tun.Read(_buffer);
                if (n == 0) { header = default; frame = default; return false; }
                if (n >= headerSize + VirtioNet.EthernetHeaderSize) _length = n;
            }
            header = VirtioNetHeader.Read(_buffer, headerSize);
            frame = _buffer.AsSpan(headerSize, _length - headerSize);
            return true;
        }

        public void Consume() => _length = 0;

        /// <summary>The TAP stays readable while frames wait, so holding one back would spin the worker: drop it, like a NIC with an empty ring.</summary>
        public bool DropWhenNoBuffers()
        {
            _length = 0;
            return true;
        }
    }
}
