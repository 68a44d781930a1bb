using System.Buffers.Binary;
using SharpVhost.Devices.Block;
using SharpVhost.Fuzz;
using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// The hostile suite's racing mode: a frontend that keeps rewriting what it shares while the backend
/// reads it. Each round lays out a request and an inflight record that claims buffers in flight, then
/// restarts the ring (so the backend recovers from the record) while <see cref="Racer"/> flips bytes of
/// the descriptors, the avail ring and the record. The backend may break the queue; it must not crash,
/// touch memory outside what it was given, or stop serving the connection and the next one.
/// </summary>
[Collection(FdCountingCollection.Name)]
public sealed unsafe class RacingFrontendTests
{
    public static TheoryData<MetadataAccess, bool> Cases() => new()
    {
        { MetadataAccess.Direct, false }, { MetadataAccess.Checked, false },
        { MetadataAccess.Direct, true }, { MetadataAccess.Checked, true },
    };

    private const int Size = 16, Rounds = 60;

    [Theory, MemberData(nameof(Cases))]
    public void Rings_and_inflight_records_rewritten_during_recovery(MetadataAccess access, bool packed)
    {
        bool wasEnabled = Racer.Enabled;
        Racer.Enabled = true;
        try
        {
            Attack.Run(h => Race(h, packed), queues: 1, options: new BackendOptions { Metadata = access });
        }
        finally
        {
            Racer.Disarm();
            Racer.Enabled = wasEnabled;
        }
    }

    private static void Race(HostileFrontend h, bool packed)
    {
        h.Greet(VhostUserProtocolFeatures.InflightShmFd);
        h.SetFeatures(packed ? HostileFrontend.DriverFeatures | VirtioFeatureBits.Bit(VirtioFeatureBits.RingPacked) : HostileFrontend.DriverFeatures);
        var memory = h.ShareMemory(1 << 20);
        ulong inflightBytes = packed ? PackedInflightTracker.RegionSize(Size) : SplitInflightTracker.RegionSize(Size);
        using var reply = h.Call(FrontEndRequest.GetInflightFd, new InflightDescription(0, 0, 1, Size));
        Assert.NotNull(reply);
        Assert.Equal(inflightBytes, reply!.ParsePayload<InflightDescription>().MmapSize);
        using var inflightFd = reply.Fds.Take(0);
        using var inflight = MemoryMapping.Map(inflightFd, 0, inflightBytes, writable: true);

        ulong ringBase = memory.Allocate(3 * 4096, 4096);
        ulong desc = ringBase, driverArea = ringBase + 4096, deviceArea = ringBase + 8192;
        ulong buffer = memory.Allocate(4096, 4096);
        var kick = h.Own(EventFd.Create(nonBlocking: true));
        var call = h.Own(EventFd.Create(nonBlocking: true));
        h.Ok(FrontEndRequest.SetVringNum, new VringState(0, Size));
        h.Ok(FrontEndRequest.SetVringBase, new VringState(0, packed ? 0x8000_8000u : 0));
        // Split: descriptors, used (device area), avail (driver area), as VringAddress orders them.
        h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(0, VringAddressFlags.None,
            memory.ToFrontendVirtual(desc), memory.ToFrontendVirtual(deviceArea), memory.ToFrontendVirtual(driverArea), 0));
        h.Ok(FrontEndRequest.SetVringCall, new VringFd(0, false), [call.Fd]);

        var ring = memory.GetSpan(ringBase, 3 * 4096);
        var record = inflight.GetSpan(0, (int)inflightBytes);
        var image = new byte[ring.Length + record.Length];
        nint ringHost = (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref ring[0]);
        int ringBytes = ring.Length;
        nint recordHost = inflight.Address;
        long racedBefore = Racer.Bursts;
        for (int round = 0; round < Rounds; round++)
        {
            LayOut(memory, desc, driverArea, buffer, packed, round);
            if (packed) PackedRecord(record, buffer); else SplitRecord(record, round);
            ring.CopyTo(image);
            record.CopyTo(image.AsSpan(ring.Length));
            Racer.Arm(image, i => i < ringBytes ? ringHost + i : recordHost + (i - ringBytes), (ulong)round * 7919 + (packed ? 1ul : 0));
            // Restart the ring: recovery reads the record while it is being rewritten.
            h.Request(FrontEndRequest.SetVringKick, new VringFd(0, false), [kick.Fd]);
            h.Request(FrontEndRequest.SetVringEnable, new VringState(0, 1));
            kick.Signal();
            Thread.Sleep(2);
            using (var stopped = h.Call(FrontEndRequest.GetVringBase, new VringState(0, 0))) Assert.NotNull(stopped); // the connection lives
            Racer.Disarm();
            h.Request(FrontEndRequest.SetVringBase, new VringState(0, packed ? 0x8000_8000u : 0));
        }
        Assert.True(Racer.Bursts > racedBefore, "the racer never ran");
        Assert.Equal(h.OfferedFeatures, h.GetU64(FrontEndRequest.GetFeatures));
    }

    /// <summary>A GET_ID request at the ring's start (head 0 / buffer id 0), made available.</summary>
    private static void LayOut(SharpVhost.VhostUser.Frontend.SharedMemory m, ulong desc, ulong driverArea, ulong buffer, bool packed, int round)
    {
        var header = m.GetSpan(buffer, 64);
        header.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(header, VirtioBlk.TypeGetId);
        var table = m.GetSpan(desc, Size * 16);
        table.Clear();
        (ulong Address, uint Length, bool Write)[] parts = [(buffer, 16, false), (buffer + 16, 20, true), (buffer + 36, 1, true)];
        for (int i = 0; i < parts.Length; i++)
        {
            var d = table.Slice(i * 16, 16);
            BinaryPrimitives.WriteUInt64LittleEndian(d, parts[i].Address);
            BinaryPrimitives.WriteUInt32LittleEndian(d[8..], parts[i].Length);
            bool last = i == parts.Length - 1;
            ushort write = parts[i].Write ? VirtqDescriptor.FlagWrite : (ushort)0;
            if (packed)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(d[12..], 0); // buffer id 0
                BinaryPrimitives.WriteUInt16LittleEndian(d[14..], (ushort)(write | (last ? 0 : VirtqDescriptor.FlagNext) | PackedRingLayout.FlagAvail));
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(d[12..], (ushort)(write | (last ? 0 : VirtqDescriptor.FlagNext)));
                BinaryPrimitives.WriteUInt16LittleEndian(d[14..], (ushort)(i + 1));
            }
        }
        if (!packed)
        {
            var avail = m.GetSpan(driverArea, 4 + 2 * Size);
            avail.Clear();
            BinaryPrimitives.WriteUInt16LittleEndian(avail[2..], (ushort)(1 + round)); // idx: a few entries, all head 0
        }
    }

    /// <summary>A split record claiming every head in flight (the frontend writes what it likes there).</summary>
    private static void SplitRecord(Span<byte> r, int round)
    {
        r.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(r[8..], 1);        // version
        BinaryPrimitives.WriteUInt16LittleEndian(r[10..], Size);    // desc_num
        BinaryPrimitives.WriteUInt16LittleEndian(r[12..], (ushort)(round % Size)); // last batch head
        BinaryPrimitives.WriteUInt16LittleEndian(r[14..], (ushort)round);          // used idx
        for (int head = 0; head < Size; head++)
        {
            var e = r.Slice(16 + head * 16, 16);
            e[0] = 1;
            BinaryPrimitives.WriteUInt16LittleEndian(e[6..], (ushort)((head + 1) % Size));
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], (ulong)(Size - head));
        }
    }

    /// <summary>A packed record claiming four one-descriptor buffers in flight, each a copy of a write into the buffer.</summary>
    private static void PackedRecord(Span<byte> r, ulong buffer)
    {
        r.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(r[8..], 0x5002);   // version
        BinaryPrimitives.WriteUInt16LittleEndian(r[10..], Size);    // desc_num
        BinaryPrimitives.WriteUInt16LittleEndian(r[12..], 0x8000);  // used 0, wrap 1
        int copies = 16 + Size * 16;
        for (int id = 0; id < 4; id++)
        {
            var e = r.Slice(16 + id * 16, 16);
            e[0] = 1;
            BinaryPrimitives.WriteUInt16LittleEndian(e[2..], 1);            // count
            BinaryPrimitives.WriteUInt16LittleEndian(e[4..], (ushort)id);   // first copy
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], (ulong)(id + 1));
            var c = r.Slice(copies + id * 24, 24);
            BinaryPrimitives.WriteUInt64LittleEndian(c, buffer + 16);
            BinaryPrimitives.WriteUInt32LittleEndian(c[8..], 21);
            BinaryPrimitives.WriteUInt16LittleEndian(c[14..], VirtqDescriptor.FlagWrite);
        }
    }
}
