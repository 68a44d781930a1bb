using System.Buffers.Binary;

namespace SharpVhost.Devices.Net.Endpoints;

/// <summary>
/// Fills every receive buffer the guest offers with generated frames of a fixed size, as fast as the
/// guest refills (for receive benchmarks); drops what the guest sends. Frames are broadcast with a
/// local experimental EtherType and a sequence number, so a receiver can count and check them.
/// </summary>
public sealed class SourceEndpoint(int frameSize, long count = long.MaxValue) : NetEndpoint
{
    public const ushort EtherType = 0x88B5; // IEEE 802 local experimental
    public const int MinFrameSize = 60;

    public int FrameSize { get; } = frameSize >= MinFrameSize ? frameSize : throw new ArgumentOutOfRangeException(nameof(frameSize), $"at least {MinFrameSize} bytes");
    /// <summary>How many frames to generate in total (over all queues); unlimited by default.</summary>
    public long Count { get; } = count;
    private long _remaining = count;

    public override string Description => $"source of {FrameSize}-byte frames";

    protected override void OnAttached(NetPort port)
    {
        if (FrameSize > port.MaxFrameLength) throw new ArgumentOutOfRangeException(nameof(frameSize), $"frames of {FrameSize} bytes do not fit the MTU {port.Mtu}");
    }

    public override bool Transmit(int pair, in TxFrame frame) => true;

    public override IRxFrameSource CreateRxSource(int pair) => new Generator(this, pair);

    /// <summary>True while more frames may be generated; takes one from the budget.</summary>
    private bool TryTake()
    {
        if (Count == long.MaxValue) return true;
        return Interlocked.Decrement(ref _remaining) >= 0;
    }

    /// <summary>One receive queue's frames: a template whose sequence number changes per frame.</summary>
    private sealed class Generator : IRxFrameSource
    {
        private readonly SourceEndpoint _owner;
        private readonly byte[] _frame;
        private long _sequence;
        private bool _taken;

        public Generator(SourceEndpoint owner, int pair)
        {
            _owner = owner;
            _frame = new byte[owner.FrameSize];
            MacAddress.Broadcast.Write(_frame);
            owner.Port.Mac.Write(_frame.AsSpan(6));
            _frame[11] ^= 0x01; // a neighbour of the port's own address, never the port itself
            BinaryPrimitives.WriteUInt16BigEndian(_frame.AsSpan(12), EtherType);
            _frame[14] = (byte)pair;
            for (int i = 24; i < _frame.Length; i++) _frame[i] = (byte)i;
        }

        public int WakeFd => -1;

        public bool TryPeek(out VirtioNetHeader header, out ReadOnlySpan<byte> frame)
        {
            header = default;
            frame = default;
            if (!_taken)
            {
                if (!_owner.TryTake()) return false;
                _taken = true;
                BinaryPrimitives.WriteInt64BigEndian(_frame.AsSpan(16), _sequence);
            }
            frame = _frame;
            return true;
        }

        public void Consume()
        {
            _taken = false;
            _sequence++;
        }
    }
}
