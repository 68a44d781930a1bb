using System.Buffers.Binary;

namespace SharpVhost.Devices.Block;

/// <summary>The virtio-blk config space, laid out as <c>struct virtio_blk_config</c>.</summary>
public static class BlockConfig
{
    public const int Size = 60;

    public static byte[] Build(long capacityBytes, int blockSize, int segMax, int numQueues, bool writeback,
        uint maxDiscardSectors, uint maxDiscardSegments, uint maxWriteZeroesSectors, uint maxWriteZeroesSegments)
    {
        var c = new byte[Size];
        BinaryPrimitives.WriteUInt64LittleEndian(c.AsSpan(0), (ulong)capacityBytes / VirtioBlk.SectorSize);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(8), 0);           // size_max (not offered)
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(12), (uint)segMax);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(20), (uint)blockSize);
        // topology at 24: physical_block_exp 0, alignment_offset 0, min_io_size 1 block, opt_io_size 0
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(26), 1);
        c[32] = writeback ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(34), (ushort)numQueues);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(36), maxDiscardSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(40), maxDiscardSegments);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(44), (uint)(blockSize / VirtioBlk.SectorSize));
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(48), maxWriteZeroesSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(52), maxWriteZeroesSegments);
        c[56] = 1; // write_zeroes_may_unmap
        return c;
    }

    public const int WritebackOffset = 32;
}
