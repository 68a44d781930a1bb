using System.Buffers.Binary;
using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Block;

/// <summary>
/// Turns virtio-blk requests into storage calls, moving data straight between the storage and the
/// guest's buffers. A malformed request is answered with an error status (or, if it has no room for
/// a status byte, returned with length 0) and counted; it never stops the queue.
/// </summary>
internal sealed class BlockRequestProcessor(IBlockStorage storage, byte[] serial, BlockDeviceOptions options) : IQueueProcessor
{
    private readonly DescriptorChain _chain = new();
    private byte[] _segmentBuffer = new byte[VirtioBlk.DiscardSegmentSize];

    public int Process(IDeviceQueue queue, GuestMemory memory, int budget)
    {
        int handled = 0;
        while (handled < budget && queue.TryPop(_chain))
        {
            handled++;
            uint written = Handle(_chain, queue.Counters);
            queue.AddUsed(_chain, written);
        }
        return handled;
    }

    /// <summary>Handles one request; returns the number of bytes written into the chain (data plus status).</summary>
    private uint Handle(DescriptorChain chain, QueueCounters counters)
    {
        Span<byte> header = stackalloc byte[VirtioBlk.HeaderSize];
        if (chain.WritableBytes == 0) { counters.Errors++; return 0; }
        var last = chain.Writable[^1];
        var statusSpan = chain.GetSpan(last)[^1..];
        if (chain.CopyFromReadable(0, header) < VirtioBlk.HeaderSize)
        {
            counters.Errors++;
            statusSpan[0] = VirtioBlk.StatusIoError;
            return 1;
        }
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        uint dataIn = 0;
        byte status;
        try
        {
            status = type switch
            {
                VirtioBlk.TypeIn => Read(chain, sector, out dataIn),
                VirtioBlk.TypeOut => Write(chain, sector),
                VirtioBlk.TypeFlush => Flush(),
                VirtioBlk.TypeGetId => GetId(chain, out dataIn),
                VirtioBlk.TypeDiscard => DiscardOrZero(chain, zero: false),
                VirtioBlk.TypeWriteZeroes => DiscardOrZero(chain, zero: true),
                _ => VirtioBlk.StatusUnsupported,
            };
        }
        catch (IOException)
        {
            status = VirtioBlk.StatusIoError;
        }
        if (status != VirtioBlk.StatusOk) counters.Errors++;
        statusSpan[0] = status;
        return dataIn + 1;
    }

    private bool InRange(ulong sector, ulong bytes, out long offset)
    {
        offset = 0;
        if (bytes % VirtioBlk.SectorSize != 0 || sector > long.MaxValue / VirtioBlk.SectorSize) return false;
        ulong start = sector * VirtioBlk.SectorSize;
        if (start > (ulong)storage.Capacity || bytes > (ulong)storage.Capacity - start) return false;
        offset = (long)start;
        return true;
    }

    private byte Read(DescriptorChain chain, ulong sector, out uint dataIn)
    {
        dataIn = 0;
        uint length = chain.WritableBytes - 1;
        if (!InRange(sector, length, out long offset)) return VirtioBlk.StatusIoError;
        var writable = chain.Writable;
        for (int i = 0; i < writable.Length; i++)
        {
            var span = chain.GetSpan(writable[i]);
            if (i == writable.Length - 1) span = span[..^1]; // the status byte
            if (span.IsEmpty) continue; // the status alone in its buffer: no storage call for nothing
            storage.Read(span, offset);
            offset += span.Length;
        }
        dataIn = length;
        return VirtioBlk.StatusOk;
    }

    private byte Write(DescriptorChain chain, ulong sector)
    {
        if (storage.ReadOnly) return VirtioBlk.StatusIoError;
        uint length = chain.ReadableBytes - VirtioBlk.HeaderSize;
        if (!InRange(sector, length, out long offset)) return VirtioBlk.StatusIoError;
        int skip = VirtioBlk.HeaderSize;
        foreach (var segment in chain.Readable)
        {
            var span = chain.GetSpan(segment);
            if (skip >= span.Length) { skip -= span.Length; continue; }
            span = span[skip..];
            skip = 0;
            storage.Write(span, offset);
            offset += span.Length;
        }
        return VirtioBlk.StatusOk;
    }

    private byte Flush()
    {
        storage.Flush();
        return VirtioBlk.StatusOk;
    }

    private byte GetId(DescriptorChain chain, out uint dataIn)
    {
        // The id is NUL-padded to 20 bytes when there is room; we write what fits before the status byte.
        Span<byte> id = stackalloc byte[VirtioBlk.GetIdLength];
        id.Clear();
        serial.CopyTo(id);
        int room = (int)Math.Min(chain.WritableBytes - 1, VirtioBlk.GetIdLength);
        dataIn = (uint)chain.CopyToWritable(0, id[..room]);
        return VirtioBlk.StatusOk;
    }

    private byte DiscardOrZero(DescriptorChain chain, bool zero)
    {
        if (storage.ReadOnly || !(zero ? storage.SupportsWriteZeroes : storage.SupportsDiscard)) return VirtioBlk.StatusUnsupported;
        uint payload = chain.ReadableBytes - VirtioBlk.HeaderSize;
        if (payload == 0 || payload % VirtioBlk.DiscardSegmentSize != 0) return VirtioBlk.StatusIoError;
        uint count = payload / VirtioBlk.DiscardSegmentSize;
        if (count > options.MaxDiscardSegments || count > int.MaxValue / VirtioBlk.DiscardSegmentSize) return VirtioBlk.StatusIoError;
        // One copy of every segment (the guest may rewrite them meanwhile), all checked before the
        // storage is touched: a refused request changes nothing. The buffer is at most
        // MaxDiscardSegments x 16 bytes and reused.
        int bytes = (int)count * VirtioBlk.DiscardSegmentSize;
        if (_segmentBuffer.Length < bytes) _segmentBuffer = new byte[bytes];
        var segments = _segmentBuffer.AsSpan(0, bytes);
        chain.CopyFromReadable(VirtioBlk.HeaderSize, segments);
        for (int pass = 0; pass < 2; pass++)
        {
            for (int i = 0; i < (int)count; i++)
            {
                var segment = segments.Slice(i * VirtioBlk.DiscardSegmentSize, VirtioBlk.DiscardSegmentSize);
                ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(segment);
                uint sectors = BinaryPrimitives.ReadUInt32LittleEndian(segment[8..]);
                uint flags = BinaryPrimitives.ReadUInt32LittleEndian(segment[12..]);
                if (sectors > options.MaxDiscardSectors) return VirtioBlk.StatusIoError;
                if (!InRange(sector, (ulong)sectors * VirtioBlk.SectorSize, out long offset)) return VirtioBlk.StatusIoError;
                if (!zero && flags != 0) return VirtioBlk.StatusUnsupported;
                if (zero && (flags & ~VirtioBlk.WriteZeroesUnmap) != 0) return VirtioBlk.StatusUnsupported;
                if (pass == 0) continue;
                long length = (long)sectors * VirtioBlk.SectorSize;
                if (zero) storage.WriteZeroes(offset, length, (flags & VirtioBlk.WriteZeroesUnmap) != 0);
                else storage.Discard(offset, length);
            }
        }
        return VirtioBlk.StatusOk;
    }
}
