using System.Runtime.InteropServices;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.Memory;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Net;

/// <summary>SplitQueue.UndoPop, which net receive queues use when a frame needs more buffers than are there.</summary>
public class UndoPopTests
{
    [Fact]
    public void Undone_chains_are_popped_again_in_order()
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device);
        var q = guest.Rx();
        var heads = Enumerable.Range(0, 4).Select(_ => q.AddWritable(100)).ToArray();
        var chain = new DescriptorChain();
        Assert.True(q.Device.Attach(guest.Memory));
        for (int i = 0; i < 3; i++) { Assert.True(q.Device.TryPop(chain)); Assert.Equal(heads[i], chain.Id); }
        q.Device.UndoPop(2);
        Assert.True(q.Device.TryPop(chain));
        Assert.Equal(heads[1], chain.Id);
        Assert.True(q.Device.TryPop(chain));
        Assert.Equal(heads[2], chain.Id);
        Assert.True(q.Device.TryPop(chain));
        Assert.Equal(heads[3], chain.Id);
        Assert.False(q.Device.TryPop(chain));
        Assert.Equal(4, q.Device.Counters.Requests);
    }

    [Fact]
    public void Undone_chains_are_no_longer_marked_in_flight()
    {
        using var device = new NetDevice(new SinkEndpoint(), new NetDeviceOptions());
        using var guest = new GuestNet(device);
        var q = guest.Rx();
        int size = q.Device.Size;
        var region = Marshal.AllocHGlobal((nint)SplitInflightTracker.RegionSize(size));
        try
        {
            unsafe { new Span<byte>((void*)region, (int)SplitInflightTracker.RegionSize(size)).Clear(); }
            q.Device.Inflight = new SplitInflightTracker(region, size);
            var heads = Enumerable.Range(0, 3).Select(_ => q.AddWritable(100)).ToArray();
            var chain = new DescriptorChain();
            Assert.True(q.Device.Attach(guest.Memory));
            for (int i = 0; i < 3; i++) Assert.True(q.Device.TryPop(chain));
            q.Device.UndoPop(2);
            unsafe
            {
                byte* entries = (byte*)region + 16;
                Assert.Equal(1, entries[heads[0] * 16]);
                Assert.Equal(0, entries[heads[1] * 16]);
                Assert.Equal(0, entries[heads[2] * 16]);
            }
        }
        finally { Marshal.FreeHGlobal(region); }
    }

    [Theory]
    [InlineData(4)]
    [InlineData(8)]
    public void Packed_undone_chains_come_back_even_across_a_wrap(int size)
    {
        using var f = new SharpVhost.Tests.Virtio.Packed.PackedRingFixture(size, MetadataAccess.Direct);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        var ids = new List<ushort>();
        // Go round the ring a few times, each round popping three, undoing two and popping them again.
        for (int round = 0; round < 3 * size; round++)
        {
            ids.Clear();
            for (int i = 0; i < Math.Min(3, size); i++)
            {
                Assert.True(f.Driver.TryAdd([new DriverBuffer(f.AllocateBuffer(64), 64, true)], out ushort id));
                ids.Add(id);
            }
            f.Driver.Publish();
            for (int i = 0; i < ids.Count; i++) { Assert.True(f.Device.TryPop(chain)); Assert.Equal(ids[i], chain.Id); }
            f.Device.UndoPop(2);
            for (int i = ids.Count - 2; i < ids.Count; i++) { Assert.True(f.Device.TryPop(chain)); Assert.Equal(ids[i], chain.Id); }
            Assert.False(f.Device.TryPop(chain));
            foreach (var id in ids) f.Device.AddUsed(id, 0);
            f.Device.FlushUsed();
            while (f.Driver.TryGetUsed(out _, out _)) { }
        }
        Assert.Null(f.Device.BrokenReason);
    }
}
