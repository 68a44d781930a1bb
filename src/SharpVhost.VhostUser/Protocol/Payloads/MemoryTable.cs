using System.Buffers.Binary;
using System.Collections.Immutable;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// SET_MEM_TABLE: <c>{u32 nregions; u32 padding; region[nregions]}</c>, with one fd per region in
/// the same order. QEMU sends only the used regions; a payload padded to all 8 slots is accepted too.
/// </summary>
public readonly record struct MemoryTable(ImmutableArray<MemoryRegion> Regions) : IVhostUserPayload<MemoryTable>
{
    public const int HeaderSize = 8;

    public int WireSize => HeaderSize + Regions.Length * MemoryRegion.WireSize;

    /// <summary>Reads only the region count (for fd-count validation), without checking the rest.</summary>
    public static uint PeekRegionCount(ReadOnlySpan<byte> payload) =>
        payload.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(payload) : 0;

    public static MemoryTable Parse(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < HeaderSize)
            throw new VhostUserProtocolException($"Memory table payload must be at least {HeaderSize} bytes, got {payload.Length}.");
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (count == 0 || count > VhostUserLimits.MaxMemTableRegions)
            throw new VhostUserProtocolException(
                $"Memory table has {count} regions; 1 to {VhostUserLimits.MaxMemTableRegions} allowed.");
        int exact = HeaderSize + (int)count * MemoryRegion.WireSize;
        int full = HeaderSize + VhostUserLimits.MaxMemTableRegions * MemoryRegion.WireSize;
        if (payload.Length != exact && payload.Length != full)
            throw new VhostUserProtocolException(
                $"Memory table with {count} regions must be {exact} (or {full}) bytes, got {payload.Length}.");

        var regions = ImmutableArray.CreateBuilder<MemoryRegion>((int)count);
        for (int i = 0; i < count; i++)
        {
            int at = HeaderSize + i * MemoryRegion.WireSize;
            regions.Add(MemoryRegion.Parse(payload.Slice(at, MemoryRegion.WireSize)));
        }
        return new MemoryTable(regions.MoveToImmutable());
    }

    public void Write(Span<byte> destination)
    {
        PayloadCheck.Room(destination, WireSize, "memory table");
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)Regions.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], 0);
        for (int i = 0; i < Regions.Length; i++)
            Regions[i].Write(destination.Slice(HeaderSize + i * MemoryRegion.WireSize));
    }

    public bool Equals(MemoryTable other) => Regions.AsSpan().SequenceEqual(other.Regions.AsSpan());
    public override int GetHashCode() => Regions.Length;
}
