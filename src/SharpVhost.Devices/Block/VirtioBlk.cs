namespace SharpVhost.Devices.Block;

/// <summary>virtio-blk constants (virtio 1.2, 5.2).</summary>
public static class VirtioBlk
{
    public const int SectorSize = 512;
    public const int HeaderSize = 16;
    public const int GetIdLength = 20;
    public const int DiscardSegmentSize = 16;

    public const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8, TypeDiscard = 11, TypeWriteZeroes = 13;
    public const byte StatusOk = 0, StatusIoError = 1, StatusUnsupported = 2;

    public const int FeatureSizeMax = 1, FeatureSegMax = 2, FeatureGeometry = 4, FeatureReadOnly = 5, FeatureBlockSize = 6,
        FeatureFlush = 9, FeatureTopology = 10, FeatureConfigWce = 11, FeatureMultiQueue = 12, FeatureDiscard = 13, FeatureWriteZeroes = 14;

    /// <summary>Flag bit of a WRITE_ZEROES segment: the device may deallocate the range.</summary>
    public const uint WriteZeroesUnmap = 1;
}
