using System.Buffers.Binary;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Block;

/// <summary>What a virtio-blk request asks for, once checked.</summary>
internal enum BlockRequestKind : byte
{
    /// <summary>No device-writable byte: nowhere to put a status; returned with length 0.</summary>
    NoStatus,
    /// <summary>Answered at once with <see cref="BlockRequest.Status"/> (a malformed or unsupported request).</summary>
    Refused,
    GetId,
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
}

/// <summary>
/// A parsed request: its kind, where on the storage it starts and how many bytes it covers (data
/// requests), and for DISCARD/WRITE_ZEROES how many range segments were copied out of the guest.
/// </summary>
internal readonly record struct BlockRequest(BlockRequestKind Kind, long Offset = 0, long Length = 0, byte Status = VirtioBlk.StatusOk, int Ranges = 0)
{
    public static BlockRequest Refuse(byte status) => new(BlockRequestKind.Refused, Status: status);
}

/// <summary>
/// Turns a descriptor chain into a <see cref="BlockRequest"/>, checking every guest-controlled field
/// (header, sector range, lengths, discard segments) before the storage sees anything; the executor
/// (<see cref="BlockRequestProcessor"/>) only runs what this accepted. The split follows rust-vmm's
/// virtio-blk (request parsing apart from the executor).
/// </summary>
internal sealed class BlockRequestParser(long capacity, bool readOnly, bool supportsDiscard, BlockDeviceOptions options)
{
    /// <summary>Bytes of range segments a DISCARD or WRITE_ZEROES may carry (what <see cref="Parse"/>'s copy buffer needs).</summary>
    public int MaxRangeBytes => (int)Math.Min(options.MaxDiscardSegments, int.MaxValue / VirtioBlk.DiscardSegmentSize) * VirtioBlk.DiscardSegmentSize;

    /// <summary>
    /// Parses <paramref name="chain"/>. DISCARD and WRITE_ZEROES ranges are copied into
    /// <paramref name="ranges"/> (the guest may rewrite them meanwhile) and all checked before the
    /// request is accepted: a refused request changes nothing.
    /// </summary>
    public BlockRequest Parse(DescriptorChain chain, Span<byte> ranges)
    {
        if (chain.WritableBytes == 0) return new BlockRequest(BlockRequestKind.NoStatus);
        Span<byte> header = stackalloc byte[VirtioBlk.HeaderSize];
        if (chain.CopyFromReadable(0, header) < VirtioBlk.HeaderSize) return BlockRequest.Refuse(VirtioBlk.StatusIoError);
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        switch (type)
        {
            case VirtioBlk.TypeIn:
            {
                uint length = chain.WritableBytes - 1; // the status byte
                return InRange(sector, length, out long offset)
                    ? new BlockRequest(BlockRequestKind.Read, offset, length)
                    : BlockRequest.Refuse(VirtioBlk.StatusIoError);
            }
            case VirtioBlk.TypeOut:
            {
                if (readOnly) return BlockRequest.Refuse(VirtioBlk.StatusIoError);
                uint length = chain.ReadableBytes - VirtioBlk.HeaderSize;
                return InRange(sector, length, out long offset)
                    ? new BlockRequest(BlockRequestKind.Write, offset, length)
                    : BlockRequest.Refuse(VirtioBlk.StatusIoError);
            }
            case VirtioBlk.TypeFlush: return new BlockRequest(BlockRequestKind.Flush);
            case VirtioBlk.TypeGetId: return new BlockRequest(BlockRequestKind.GetId);
            case VirtioBlk.TypeDiscard: return ParseRanges(chain, ranges, zero: false);
            case VirtioBlk.TypeWriteZeroes: return ParseRanges(chain, ranges, zero: true);
            default: return BlockRequest.Refuse(VirtioBlk.StatusUnsupported);
        }
    }

    private bool InRange(ulong sector, ulong bytes, out long offset)
    {
        offset = 0;
        if (bytes % VirtioBlk.SectorSize != 0 || sector > long.MaxValue / VirtioBlk.SectorSize) return false;
        ulong start = sector * VirtioBlk.SectorSize;
        if (start > (ulong)capacity || bytes > (ulong)capacity - start) return false;
        offset = (long)start;
        return true;
    }

    private BlockRequest ParseRanges(DescriptorChain chain, Span<byte> copy, bool zero)
    {
        if (readOnly || !supportsDiscard) return BlockRequest.Refuse(VirtioBlk.StatusUnsupported);
        uint payload = chain.ReadableBytes - VirtioBlk.HeaderSize;
        if (payload == 0 || payload % VirtioBlk.DiscardSegmentSize != 0) return BlockRequest.Refuse(VirtioBlk.StatusIoError);
        uint count = payload / VirtioBlk.DiscardSegmentSize;
        if (count > options.MaxDiscardSegments || payload > (uint)copy.Length) return BlockRequest.Refuse(VirtioBlk.StatusIoError);
        var segments = copy[..(int)payload];
        chain.CopyFromReadable(VirtioBlk.HeaderSize, segments);
        for (int i = 0; i < (int)count; i++)
        {
            var range = ReadRange(segments, i);
            if (range.Sectors > options.MaxDiscardSectors) return BlockRequest.Refuse(VirtioBlk.StatusIoError);
            if (!InRange(range.Sector, (ulong)range.Sectors * VirtioBlk.SectorSize, out _)) return BlockRequest.Refuse(VirtioBlk.StatusIoError);
            if (!zero && range.Flags != 0) return BlockRequest.Refuse(VirtioBlk.StatusUnsupported);
            if (zero && (range.Flags & ~VirtioBlk.WriteZeroesUnmap) != 0) return BlockRequest.Refuse(VirtioBlk.StatusUnsupported);
        }
        return new BlockRequest(zero ? BlockRequestKind.WriteZeroes : BlockRequestKind.Discard, Ranges: (int)count);
    }

    /// <summary>Range <paramref name="index"/> of a copy <see cref="Parse"/> accepted.</summary>
    public static (ulong Sector, uint Sectors, uint Flags) ReadRange(ReadOnlySpan<byte> copy, int index)
    {
        var s = copy.Slice(index * VirtioBlk.DiscardSegmentSize, VirtioBlk.DiscardSegmentSize);
        return (BinaryPrimitives.ReadUInt64LittleEndian(s), BinaryPrimitives.ReadUInt32LittleEndian(s[8..]), BinaryPrimitives.ReadUInt32LittleEndian(s[12..]));
    }
}
