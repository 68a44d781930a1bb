using SharpVhost.Interop;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// The inflight region is memory the frontend can write while we recover from it. A second thread
/// flips one buffer's descriptor count between a valid value and one far past the ring, as fast as it
/// can, while the queue recovers, resubmits and completes: whatever value recovery saw, the queue must
/// use that one value throughout (a double fetch advanced the used position to 32,259 in a 256-entry
/// ring and wrote a used descriptor half a megabyte past it, or killed the worker with an
/// IndexOutOfRangeException).
/// </summary>
public sealed class InflightDoubleFetchTests
{
    public static TheoryData<MetadataAccess> Accessors() => new() { MetadataAccess.Direct, MetadataAccess.Checked };

    private const int Size = 16;

    [Theory, MemberData(nameof(Accessors))]
    public void A_count_flipped_during_recovery_never_moves_the_used_position_past_the_ring(MetadataAccess access)
    {
        using var f = new PackedRingFixture(Size, access);
        using var region = MemoryMapping.Anonymous(PackedInflightTracker.RegionSize(Size));
        f.Device.Inflight = new PackedInflightTracker(region.Address, Size);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(32), 16, false)], out ushort a));
        Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(32), 16, true)], out ushort b));
        f.Driver.Publish();
        while (f.Device.TryPop(chain)) { }
        Assert.False(f.Device.IsBroken, f.Device.BrokenReason);

        // The state at the crash, restored before every recovery: ring and region as the device left them.
        int regionBytes = (int)PackedInflightTracker.RegionSize(Size);
        byte[] regionAtCrash = region.GetSpan(0, regionBytes).ToArray();
        int ringBytes = (int)(f.Placement.End - f.Placement.Descriptors);
        byte[] ringAtCrash = f.Shared.GetSpan(f.Placement.Descriptors, ringBytes).ToArray();
        int countOffset = 16 + a * 16 + 2; // id entry {u8 inflight; u8 pad; u16 count; ...}

        using var stop = new CancellationTokenSource();
        var flipper = new Thread(() =>
        {
            var count = region.GetSpan((ulong)countOffset, 2);
            while (!stop.IsCancellationRequested)
            {
                for (int i = 0; i < 1000; i++)
                {
                    Volatile.Write(ref count[0], 1);
                    Volatile.Write(ref count[0], 0xf0); // 240 descriptors in a ring of 16
                }
            }
        }) { IsBackground = true };
        flipper.Start();
        try
        {
            for (int round = 0; round < 3000; round++)
            {
                regionAtCrash.AsSpan(0, countOffset).CopyTo(region.GetSpan(0, countOffset));
                regionAtCrash.AsSpan(countOffset + 2).CopyTo(region.GetSpan((ulong)countOffset + 2, regionBytes - countOffset - 2));
                ringAtCrash.CopyTo(f.Shared.GetSpan(f.Placement.Descriptors, ringBytes));

                var restarted = new PackedQueue(0, access);
                restarted.SetSize(Size);
                restarted.SetRings(f.Rings());
                restarted.SetBase(0x8000_8000);
                restarted.Inflight = new PackedInflightTracker(region.Address, Size);
                Assert.True(restarted.Attach(f.Memory), restarted.BrokenReason);
                // Whichever count recovery read: a's buffer resubmitted, or its entry dropped (the ring then
                // offers b again, which is in flight: the queue is broken with a clear reason). Either
                // way nothing escapes TryPop and no position leaves the ring.
                var ids = new List<ushort>();
                while (restarted.TryPop(chain)) ids.Add(chain.Id);
                Assert.True(ids.Contains(b) || restarted.IsBroken, restarted.BrokenReason);
                foreach (ushort id in ids) restarted.AddUsed(id, 0);
                restarted.FlushUsed();
                Assert.True(!restarted.IsBroken || restarted.BrokenReason!.Contains("in flight"), restarted.BrokenReason);
                Assert.InRange(restarted.NextUsed, 0, Size - 1);
                Assert.InRange(restarted.NextAvail, 0, Size - 1);
            }
        }
        finally
        {
            stop.Cancel();
            flipper.Join();
        }
    }
}
