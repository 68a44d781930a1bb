using System.Text;
using SharpVhost.Virtio;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.Devices.Block;

/// <summary>A virtio-blk device over an <see cref="IBlockStorage"/>: features, config space, and a request processor per queue.</summary>
public sealed class BlockDevice : IVhostUserDevice
{
    private readonly byte[] _config;
    private readonly byte[] _serial;

    public IBlockStorage Storage { get; }
    public BlockDeviceOptions Options { get; }
    public string Kind => "block";
    public int QueueCount => Options.NumQueues;
    public ReadOnlySpan<byte> Config => _config;
    public ulong NegotiatedFeatures { get; private set; }

    public ulong Features { get; }

    public ulong ExtraProtocolFeatures => (ulong)(VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.MultiQueue);

    public BlockDevice(IBlockStorage storage, BlockDeviceOptions options)
    {
        if (options.NumQueues < 1 || options.NumQueues > 64) throw new ArgumentOutOfRangeException(nameof(options), "between 1 and 64 queues");
        Storage = storage;
        Options = options;
        _serial = Encoding.ASCII.GetBytes(options.Serial.Length > VirtioBlk.GetIdLength ? options.Serial[..VirtioBlk.GetIdLength] : options.Serial);
        ulong f = VirtioFeatureBits.RingBits | Bit(VirtioFeatureBits.RingPacked)
            | Bit(VirtioBlk.FeatureSegMax) | Bit(VirtioBlk.FeatureBlockSize) | Bit(VirtioBlk.FeatureFlush)
            | Bit(VirtioBlk.FeatureTopology) | Bit(VirtioBlk.FeatureMultiQueue);
        if (storage.ReadOnly) f |= Bit(VirtioBlk.FeatureReadOnly);
        else if (storage.SupportsDiscard) f |= Bit(VirtioBlk.FeatureDiscard) | Bit(VirtioBlk.FeatureWriteZeroes);
        Features = f;
        _config = BlockConfig.Build(storage.Capacity, options.BlockSize, options.QueueSize - 2, options.NumQueues, writeback: true,
            options.MaxDiscardSectors, options.MaxDiscardSegments, options.MaxDiscardSectors, options.MaxDiscardSegments);
    }

    private static ulong Bit(int bit) => 1ul << bit;

    public bool WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        // Only the writeback byte is writable (CONFIG_WCE is not offered, so nothing really is); accept it silently.
        return offset == BlockConfig.WritebackOffset && data.Length == 1;
    }

    public void OnFeaturesNegotiated(ulong features) => NegotiatedFeatures = features;

    public IQueueProcessor CreateProcessor(int queueIndex) => CreateProcessor(queueIndex, Options.QueueSize);

    /// <summary>A processor with a storage engine of its own, as deep as the ring.</summary>
    public IQueueProcessor CreateProcessor(int queueIndex, int queueSize) => new BlockRequestProcessor(Storage, _serial, Options, queueSize);
}
