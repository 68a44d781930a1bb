using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>Dirty logging on a packed ring: descriptor write-back and device-writable buffers, not what the device only read.</summary>
public sealed class PackedDirtyLogTests
{
    [Theory]
    [InlineData(MetadataAccess.Direct, false)]
    [InlineData(MetadataAccess.Checked, false)]
    [InlineData(MetadataAccess.Direct, true)]
    [InlineData(MetadataAccess.Checked, true)]
    public void Write_back_and_written_buffers_are_logged(MetadataAccess access, bool ringLogFlag)
    {
        const ulong logAddress = 0x30_0000;
        using var f = new PackedRingFixture(8, access, withLog: true, logAddress: ringLogFlag ? logAddress : 0);
        var log = f.Log!;
        Assert.True(f.Attach());
        ulong readable = f.AllocateBuffer(64, 4096);
        ulong writable = f.AllocateBuffer(8192, 4096); // two pages
        f.AllocateBuffer(1, 4096);
        Assert.True(f.Driver.TryAdd([new DriverBuffer(readable, 64, false), new DriverBuffer(writable, 8192, true)], out _));
        f.Driver.Publish();
        var chain = new DescriptorChain();
        Assert.True(f.Device.TryPop(chain));
        Assert.False(log.IsMarked(f.Placement.Descriptors)); // reading logs nothing
        f.Device.AddUsed(chain, 100);
        Assert.True(log.IsMarked(writable));
        Assert.True(log.IsMarked(writable + 4096));
        f.Device.FlushUsed();
        Assert.True(log.IsMarked(f.Placement.Descriptors));
        Assert.False(log.IsMarked(readable));
        Assert.Equal(ringLogFlag, log.IsMarked(logAddress)); // DPDK's convention: write-back also at the ring's log address
    }

    [Theory]
    [InlineData(MetadataAccess.Direct)]
    [InlineData(MetadataAccess.Checked)]
    public void Device_area_writes_are_logged(MetadataAccess access)
    {
        using var f = new PackedRingFixture(8, access, withLog: true);
        Assert.True(f.Attach());
        Assert.False(f.Log!.IsMarked(f.Placement.DeviceArea));
        f.Device.EnableKicks();
        Assert.True(f.Log.IsMarked(f.Placement.DeviceArea));
    }
}
