using System.Buffers.Binary;
using SharpVhost.Devices.Block;
using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Block;

/// <summary>
/// A block queue over an engine that completes when the test says, split or packed, either accessor:
/// chains stay in flight across passes, complete out of order, and each completion is published
/// with its own status.
/// </summary>
internal sealed class AsyncBlockHarness : IDisposable
{
    public const int QueueSize = 32;
    public SharedMemory Memory { get; } = new(4 << 20);
    public IDriverQueue Driver { get; }
    public IDeviceQueue Device { get; }
    public IQueueProcessor Processor { get; }
    public EngineStorage Storage { get; }
    public ManualEngine Engine => (ManualEngine)Storage.Engines.Single();

    public AsyncBlockHarness(bool packed, MetadataAccess access, int maxSegments = 1024, int depth = QueueSize)
    {
        Storage = new EngineStorage(1 << 20, (ram, d) => new ManualEngine(ram, Math.Min(d, depth), maxSegments));
        if (packed)
        {
            var p = PackedRingPlacement.At(Memory.Allocate(PackedRingPlacement.At(0, QueueSize).End, 4096), QueueSize);
            Driver = new PackedDriverQueue(Memory.Memory, p, QueueSize, eventIndex: false);
            var q = new PackedQueue(0, access);
            q.SetSize(QueueSize);
            q.SetRings(new RingAddresses(Memory.ToFrontendVirtual(p.Descriptors), Memory.ToFrontendVirtual(p.DriverArea), Memory.ToFrontendVirtual(p.DeviceArea)));
            Device = q;
        }
        else
        {
            var p = SplitRingPlacement.At(Memory.Allocate(SplitRingPlacement.At(0, QueueSize).End, 4096), QueueSize);
            Driver = new SplitDriverQueue(Memory.Memory, p, QueueSize, eventIndex: false);
            var q = new SplitQueue(0, access);
            q.SetSize(QueueSize);
            q.SetRings(new RingAddresses(Memory.ToFrontendVirtual(p.Descriptors), Memory.ToFrontendVirtual(p.Avail), Memory.ToFrontendVirtual(p.Used)));
            Device = q;
        }
        Processor = new BlockDevice(Storage, new BlockDeviceOptions()).CreateProcessor(0, QueueSize);
    }

    public ulong Header(uint type, ulong sector)
    {
        ulong at = Memory.Allocate(16, 16);
        var h = Memory.GetSpan(at, 16);
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h, type);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], sector);
        return at;
    }

    public ulong Buffer(int length, byte fill)
    {
        ulong at = Memory.Allocate((ulong)length, 512);
        Memory.GetSpan(at, length).Fill(fill);
        return at;
    }

    /// <summary>A read of <paramref name="segments"/> x <paramref name="segmentBytes"/> from <paramref name="sector"/>: returns the id, data and status addresses.</summary>
    public (ushort Id, ulong Data, ulong Status) AddRead(ulong sector, int segments = 1, int segmentBytes = 512)
    {
        ulong data = Buffer(segments * segmentBytes, 0xEE);
        ulong status = Buffer(1, 0xFF);
        var chain = new List<DriverBuffer> { new(Header(VirtioBlk.TypeIn, sector), 16, false) };
        for (int i = 0; i < segments; i++) chain.Add(new(data + (ulong)(i * segmentBytes), (uint)segmentBytes, true));
        chain.Add(new(status, 1, true));
        Assert.True(Driver.TryAdd(chain.ToArray(), out ushort id));
        return (id, data, status);
    }

    public void Publish() => Driver.Publish();

    /// <summary>One worker pass: process (pop and start), then publish the used index.</summary>
    public int Pass(int budget = 64)
    {
        Assert.True(Device.Attach(Memory.Memory));
        int n = Processor.Process(Device, Memory.Memory, budget);
        Device.FlushUsed();
        return n;
    }

    public List<(ushort Id, uint Length)> Used()
    {
        var used = new List<(ushort, uint)>();
        while (Driver.TryGetUsed(out ushort id, out uint length)) used.Add((id, length));
        return used;
    }

    public byte StatusAt(ulong status) => Memory.GetSpan(status, 1)[0];

    public void Dispose()
    {
        (Processor as IDisposable)?.Dispose();
        Memory.Dispose();
        Storage.Dispose();
    }
}

public class AsyncBlockRequestTests
{
    public static TheoryData<bool, MetadataAccess> Layouts() => new()
    {
        { false, MetadataAccess.Direct }, { false, MetadataAccess.Checked },
        { true, MetadataAccess.Direct }, { true, MetadataAccess.Checked },
    };

    private static void FillDisk(AsyncBlockHarness h, ulong sector, int bytes, byte value)
    {
        var data = new byte[bytes];
        data.AsSpan().Fill(value);
        h.Storage.Ram.Write(data, (long)sector * 512);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void RequestsCompleteOutOfOrderAndLate(bool packed, MetadataAccess access)
    {
        using var h = new AsyncBlockHarness(packed, access);
        var reads = new List<(ushort Id, ulong Data, ulong Status)>();
        for (int i = 0; i < 4; i++)
        {
            FillDisk(h, (ulong)i * 8, 4096, (byte)(0x10 + i));
            reads.Add(h.AddRead((ulong)i * 8, segments: 2, segmentBytes: 2048));
        }
        h.Publish();

        // All four are started in one pass and none is answered: the device went back to the ring.
        Assert.Equal(4, h.Pass());
        Assert.Equal(4, h.Processor.InFlight);
        Assert.Equal(4, h.Engine.Held.Count);
        Assert.Empty(h.Used());
        Assert.All(reads, r => Assert.Equal(0xFF, h.StatusAt(r.Status)));
        Assert.All(reads, r => Assert.True(h.Memory.GetSpan(r.Data, 4096).IndexOfAnyExcept((byte)0xEE) < 0, "data arrived before its completion"));

        // More chains arrive while those are in flight: popped too.
        FillDisk(h, 100, 512, 0x77);
        var late = h.AddRead(100);
        h.Publish();
        Assert.Equal(1, h.Pass());
        Assert.Equal(5, h.Processor.InFlight);

        // Complete in the order 3, 1, late, 0, 2: used elements follow completion order.
        var order = new[] { reads[3], reads[1], late, reads[0], reads[2] };
        foreach (var r in order)
        {
            Assert.True(h.Memory.Memory.TryTranslate(r.Data, 1, true, out nint host));
            int held = h.Engine.Held.ToList().FindIndex(op => op.Segments[0].Address == host);
            Assert.True(held >= 0);
            h.Engine.Complete(held);
            h.Pass();
            var used = h.Used();
            Assert.Equal([r.Id], used.Select(u => u.Id));
            Assert.Equal(0, h.StatusAt(r.Status));
        }
        Assert.Equal(0, h.Processor.InFlight);
        for (int i = 0; i < 4; i++)
            Assert.True(h.Memory.GetSpan(reads[i].Data, 4096).IndexOfAnyExcept((byte)(0x10 + i)) < 0);
        Assert.True(h.Memory.GetSpan(late.Data, 512).IndexOfAnyExcept((byte)0x77) < 0);
        Assert.Equal(0, h.Device.Counters.Errors);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void AStorageErrorFailsThatRequestAlone(bool packed, MetadataAccess access)
    {
        using var h = new AsyncBlockHarness(packed, access);
        FillDisk(h, 0, 1024, 0x42);
        var a = h.AddRead(0);
        var b = h.AddRead(1);
        h.Publish();
        h.Pass();
        h.Engine.Complete(0, result: -5); // EIO for the first
        h.Engine.Complete(0);
        h.Pass();
        var used = h.Used();
        Assert.Equal(2, used.Count);
        Assert.Equal(VirtioBlk.StatusIoError, h.StatusAt(a.Status));
        Assert.Equal(1u, used.Single(u => u.Id == a.Id).Length); // status only: no data claimed
        Assert.Equal(VirtioBlk.StatusOk, h.StatusAt(b.Status));
        Assert.Equal(513u, used.Single(u => u.Id == b.Id).Length);
        Assert.Equal(1, h.Device.Counters.Errors);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void AChainWithMoreSegmentsThanTheEngineTakesIsSplit(bool packed, MetadataAccess access)
    {
        using var h = new AsyncBlockHarness(packed, access, maxSegments: 3);
        var data = new byte[7 * 512];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(i * 13 + (i >> 9));
        h.Storage.Ram.Write(data, 40 * 512);
        var r = h.AddRead(40, segments: 7);
        h.Publish();
        h.Pass();
        // 7 segments, at most 3 per operation: 3 + 3 + 1, at the right offsets.
        Assert.Equal([3, 3, 1], h.Engine.Held.Select(op => op.Segments.Length));
        Assert.Equal([40L * 512, 43L * 512, 46L * 512], h.Engine.Held.Select(op => op.Offset));
        Assert.All(h.Engine.Held.SelectMany(op => op.Segments), s => Assert.True(s.Length <= 512));
        h.Engine.Complete(2);
        h.Engine.Complete(0);
        h.Pass();
        Assert.Empty(h.Used()); // not done until every part is
        h.Engine.Complete(0);
        h.Pass();
        Assert.Equal([(r.Id, 7u * 512 + 1)], h.Used());
        Assert.Equal(VirtioBlk.StatusOk, h.StatusAt(r.Status));
        Assert.Equal(data, h.Memory.GetSpan(r.Data, data.Length).ToArray());
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void AFullEngineLeavesChainsWaitingNotLost(bool packed, MetadataAccess access)
    {
        using var h = new AsyncBlockHarness(packed, access, maxSegments: 1, depth: 2);
        var r = h.AddRead(0, segments: 3); // three operations, the engine takes two at a time
        var s = h.AddRead(8);
        h.Publish();
        h.Pass();
        Assert.Equal(2, h.Engine.Held.Count);
        h.Engine.Complete(0);
        h.Pass(); // the third part of r goes in now; s waits behind it
        Assert.Equal(2, h.Engine.Held.Count);
        while (h.Engine.Held.Count > 0) { h.Engine.Complete(0); h.Pass(); }
        var used = h.Used().Select(u => u.Id).Order().ToArray();
        Assert.Equal(new[] { r.Id, s.Id }.Order().ToArray(), used);
        Assert.Equal(VirtioBlk.StatusOk, h.StatusAt(r.Status));
        Assert.Equal(VirtioBlk.StatusOk, h.StatusAt(s.Status));
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void CancelledRequestsAreIoErrorsAndCounted(bool packed, MetadataAccess access)
    {
        using var h = new AsyncBlockHarness(packed, access);
        var a = h.AddRead(0);
        h.Publish();
        h.Pass();
        Assert.Equal(h.Memory.Memory.Generation, h.Processor.PinnedGeneration);
        h.Processor.CancelInFlight(h.Memory.Memory.Generation); // started in this generation: not older, untouched
        Assert.Empty(h.Engine.Cancelled);
        h.Processor.CancelInFlight(long.MaxValue);
        Assert.Single(h.Engine.Cancelled);
        h.Pass();
        Assert.Equal(VirtioBlk.StatusIoError, h.StatusAt(a.Status));
        Assert.Equal(1, h.Device.Counters.CancelledRequests);
        Assert.Equal(0, h.Processor.PinnedGeneration);
    }
}
