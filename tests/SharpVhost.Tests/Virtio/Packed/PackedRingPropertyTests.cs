using CsCheck;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio.Packed;

/// <summary>
/// Random interleavings of driver and device operations on rings of random (also non-power-of-two)
/// sizes, checked against a model: the device pops exactly what was published, in order, with the
/// buffers the driver gave; the driver reaps exactly what the device flushed, in completion order.
/// </summary>
public sealed class PackedRingPropertyTests
{
    [Fact]
    public void Driver_and_device_agree_under_random_interleavings()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Bool, Gen.Bool, Gen.Int[0, 99].Array[1, 300])
            .Sample((size, direct, eventIndex, ops) => Run(size, direct ? MetadataAccess.Direct : MetadataAccess.Checked, eventIndex, ops), iter: 300);
    }

    private static void Run(int size, MetadataAccess access, bool eventIndex, int[] ops)
    {
        using var f = new PackedRingFixture(size, access, eventIndex);
        Assert.True(f.Attach());
        var chain = new DescriptorChain();
        var offered = new Dictionary<ushort, DriverBuffer[]>();
        var addedOrder = new List<ushort>();
        int published = 0, popped = 0;
        var inFlightAtDevice = new List<(ushort Id, uint Written)>();
        var unflushed = new List<(ushort Id, uint Written)>();
        var flushed = new Queue<(ushort Id, uint Written)>();

        void Pop(int max)
        {
            for (int i = 0; i < max; i++)
            {
                bool got = f.Device.TryPop(chain);
                Assert.False(f.Device.IsBroken, f.Device.BrokenReason);
                Assert.Equal(popped < published, got);
                if (!got) return;
                ushort want = addedOrder[popped++];
                Assert.Equal(want, chain.Id);
                var buffers = offered[want];
                Assert.Equal(buffers.Length, chain.Count);
                for (int s = 0; s < buffers.Length; s++)
                {
                    Assert.Equal(buffers[s].GuestAddress, chain.Segments[s].GuestAddress);
                    Assert.Equal(buffers[s].Length, chain.Segments[s].Length);
                    Assert.Equal(buffers[s].DeviceWritable, chain.Segments[s].DeviceWritable);
                }
                inFlightAtDevice.Add((chain.Id, chain.WritableBytes));
            }
        }

        void Reap()
        {
            while (f.Driver.TryGetUsed(out ushort id, out uint length))
            {
                Assert.True(flushed.TryDequeue(out var want), "driver reaped more than the device flushed");
                Assert.Equal(want, (id, length));
                Assert.True(offered.Remove(id));
            }
            Assert.Empty(flushed);
        }

        foreach (int op in ops)
        {
            int arg = op / 5;
            switch (op % 5)
            {
                case 0:
                {
                    int n = arg % 4 + 1;
                    var buffers = new DriverBuffer[n];
                    int readable = arg % (n + 1);
                    for (int i = 0; i < n; i++) buffers[i] = new DriverBuffer(f.AllocateBuffer(32), (uint)(8 + i), i >= readable);
                    bool indirect = arg % 7 == 6 && n <= size; // a table holds at most a queue's worth of entries
                    ushort id;
                    bool added = indirect
                        ? f.Driver.TryAddIndirect(f.Shared.Memory, f.AllocateBuffer((uint)(16 * n)), buffers, out id)
                        : f.Driver.TryAdd(buffers, out id);
                    if (added)
                    {
                        offered.Add(id, buffers);
                        addedOrder.Add(id);
                    }
                    break;
                }
                case 1:
                    f.Driver.Publish();
                    published = addedOrder.Count;
                    f.Driver.NeedsKick();
                    break;
                case 2:
                    Pop(arg % 4 + 1);
                    break;
                case 3:
                    if (inFlightAtDevice.Count > 0)
                    {
                        var done = inFlightAtDevice[arg % inFlightAtDevice.Count];
                        inFlightAtDevice.Remove(done);
                        f.Device.AddUsed(done.Id, done.Written);
                        unflushed.Add(done);
                    }
                    break;
                default:
                    f.Device.FlushUsed();
                    foreach (var u in unflushed) flushed.Enqueue(u);
                    unflushed.Clear();
                    f.Device.ShouldInterrupt();
                    Reap();
                    break;
            }
        }
        // Drain: everything offered comes back.
        f.Driver.Publish();
        published = addedOrder.Count;
        Pop(size + 1);
        foreach (var done in inFlightAtDevice) { f.Device.AddUsed(done.Id, done.Written); unflushed.Add(done); }
        f.Device.FlushUsed();
        foreach (var u in unflushed) flushed.Enqueue(u);
        Reap();
        Assert.Empty(offered);
        Assert.Equal(size, f.Driver.FreeCount);
        Assert.Equal(0, f.Driver.InFlight);
        Assert.False(f.Device.IsBroken, f.Device.BrokenReason);
    }
}
