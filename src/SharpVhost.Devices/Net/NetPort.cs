using System.Numerics;

namespace SharpVhost.Devices.Net;

/// <summary>
/// The frame-facing side of one virtio-net device: its receive backlogs (one per queue pair), its
/// counters, and what the guest negotiated (header size, mergeable buffers, MTU, offloads). Endpoints
/// and other ports deliver frames here from any thread; only the port's own receive workers take them.
/// </summary>
public sealed class NetPort : IDisposable
{
    private readonly FrameBacklog[] _backlogs;
    private long _activeRxPairs; // bit per queue pair whose receive queue has started

    public string Name { get; }
    public MacAddress Mac { get; }
    public int QueuePairs { get; }
    public NetCounters Counters { get; } = new();

    public ulong NegotiatedFeatures { get; private set; }
    /// <summary>Size of the virtio-net header in front of each frame: 12 with VERSION_1 or MRG_RXBUF, else 10.</summary>
    public int HeaderSize { get; private set; } = VirtioNet.HeaderSize;
    public bool MergeableRxBuffers { get; private set; }
    public int Mtu { get; private set; }
    /// <summary>Longest frame the guest may send without GSO: MTU plus Ethernet and VLAN headers.</summary>
    public int MaxFrameLength => Mtu + VirtioNet.FrameOverhead;
    /// <summary>Longest frame a backlog slot holds.</summary>
    public int BacklogFrameLength { get; }

    public NetPort(string name, MacAddress mac, int queuePairs, int mtu, int backlogCapacity, int backlogFrameLength)
    {
        if (queuePairs < 1 || queuePairs > 64) throw new ArgumentOutOfRangeException(nameof(queuePairs), "between 1 and 64 queue pairs");
        Name = name;
        Mac = mac;
        QueuePairs = queuePairs;
        Mtu = mtu;
        BacklogFrameLength = backlogFrameLength;
        _backlogs = new FrameBacklog[queuePairs];
        for (int i = 0; i < queuePairs; i++) _backlogs[i] = new FrameBacklog(backlogCapacity, backlogFrameLength);
    }

    public FrameBacklog Backlog(int pair) => _backlogs[pair];

    /// <summary>Frames waiting in all backlogs.</summary>
    public int BacklogCount => _backlogs.Sum(b => b.Count);

    internal void ApplyFeatures(ulong features)
    {
        NegotiatedFeatures = features;
        bool version1 = (features & (1ul << 32)) != 0;
        MergeableRxBuffers = Has(VirtioNet.FeatureMrgRxbuf);
        HeaderSize = version1 || MergeableRxBuffers ? VirtioNet.HeaderSize : VirtioNet.LegacyHeaderSize;
    }

    public bool Has(int featureBit) => (NegotiatedFeatures & (1ul << featureBit)) != 0;

    /// <summary>NET_SET_MTU: false if the MTU is outside what the backlogs can hold.</summary>
    public bool SetMtu(int mtu)
    {
        if (mtu < VirtioNet.MinMtu || mtu + VirtioNet.FrameOverhead > BacklogFrameLength) return false;
        Mtu = mtu;
        return true;
    }

    internal void MarkRxStarted(int pair) => Interlocked.Or(ref _activeRxPairs, 1L << pair);
    internal void MarkRxStopped(int pair) => Interlocked.And(ref _activeRxPairs, ~(1L << pair));

    /// <summary>Queues a copy of <paramref name="frame"/> for the guest (optionally with its MAC addresses swapped); false if dropped.</summary>
    public bool Deliver(in TxFrame frame, MacAddress destination, MacAddress source, bool swapAddresses = false)
    {
        if (TooLong(frame.Length, frame.Header)) return false;
        if (_backlogs[PickPair(destination, source)].TryEnqueue(frame, swapAddresses)) return true;
        Interlocked.Increment(ref Counters.RxBacklogFull);
        return false;
    }

    /// <summary>Queues a copy of <paramref name="frame"/> for the guest; false if dropped.</summary>
    public bool Deliver(ReadOnlySpan<byte> frame, VirtioNetHeader header = default)
    {
        if (TooLong(frame.Length, header)) return false;
        var destination = frame.Length >= 12 ? MacAddress.Read(frame) : default;
        var source = frame.Length >= 12 ? MacAddress.Read(frame[6..]) : default;
        if (_backlogs[PickPair(destination, source)].TryEnqueue(frame, header)) return true;
        Interlocked.Increment(ref Counters.RxBacklogFull);
        return false;
    }

    /// <summary>Frames over this port's MTU (GSO frames: over what a backlog slot holds) are dropped and counted.</summary>
    private bool TooLong(int length, VirtioNetHeader header)
    {
        if (length <= (header.IsGso ? BacklogFrameLength : Math.Min(MaxFrameLength, BacklogFrameLength))) return false;
        Interlocked.Increment(ref Counters.RxTooLong);
        return true;
    }

    /// <summary>
    /// Spreads conversations over the started receive queues (a pair of addresses always lands on the
    /// same one, so frames of a flow stay in order). Before any receive queue started: pair 0.
    /// </summary>
    private int PickPair(MacAddress destination, MacAddress source)
    {
        long active = Volatile.Read(ref _activeRxPairs);
        if (active == 0) return 0;
        int count = BitOperations.PopCount((ulong)active);
        if (count == 1) return BitOperations.TrailingZeroCount(active);
        ulong hash = (destination.Value ^ (source.Value * 0x9E3779B97F4A7C15ul)) * 0x9E3779B97F4A7C15ul;
        int k = (int)((hash >> 32) % (uint)count);
        for (long bits = active; ; bits &= bits - 1)
            if (k-- == 0) return BitOperations.TrailingZeroCount(bits);
    }

    public void Dispose()
    {
        foreach (var b in _backlogs) b.Dispose();
    }
}
