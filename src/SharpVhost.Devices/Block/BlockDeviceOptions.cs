namespace SharpVhost.Devices.Block;

/// <summary>How a block device presents itself.</summary>
public sealed record BlockDeviceOptions
{
    public int NumQueues { get; init; } = 1;
    public int QueueSize { get; init; } = 128; // QEMU's default queue-size for vhost-user-blk: seg_max derives from it
    /// <summary>GET_ID's answer (at most 20 bytes; longer serials are cut).</summary>
    public string Serial { get; init; } = "sharpvhost";
    public int BlockSize { get; init; } = 512;
    public uint MaxDiscardSectors { get; init; } = 1u << 22;
    public uint MaxDiscardSegments { get; init; } = 32;
}
