using CsCheck;
using SharpVhost.Tests.TestSupport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Virtio;

/// <summary>
/// Random chain shapes, queue sizes and interleavings of add / publish / pop / complete / flush / reap,
/// from random starting indices (often just before the 16-bit wrap). The driver must get back exactly
/// the ids it offered, each once, with the lengths the device reported and the bytes it wrote.
/// </summary>
public class SplitQueuePropertyTests
{
    private const ulong MiB = 1 << 20;
    private const ulong AreaSize = 0x2000; // per descriptor head: buffers live here while it is in flight
    private static readonly ulong Data = TestGuest.Gpa(0x10000);
    private static readonly ulong Tables = TestGuest.Gpa(0x8000);

    public readonly record struct Op(int Kind, int A, int B);

    private static readonly Gen<(int SizeLog, int Start, bool EventIdx, Op[] Ops)> Scenarios =
        Gen.Select(
            Gen.Int[0, 8],
            Gen.OneOf(Gen.Int[65536 - 700, 65535], Gen.Int[0, 65535]),
            Gen.Bool,
            Gen.Select(Gen.Int[0, 6], Gen.Int[0, 10_000], Gen.Int[0, 10_000], (k, a, b) => new Op(k, a, b)).Array[1, 250]);

    private sealed record Offered(ushort Head, byte[] Readable, (ulong Gpa, uint Length)[] Writable);
    private sealed record Held(ushort Head, byte[] Readable, (nint Host, uint Length)[] Writable);

    [Theory, MemberData(nameof(Echo.Accesses), MemberType = typeof(Echo))]
    public void DriverGetsBackExactlyWhatItOffered(MetadataAccess access)
        => Scenarios.Sample(s => Run(access, s.SizeLog, (ushort)s.Start, s.EventIdx, s.Ops), iter: 150, threads: 1,
            print: s => $"size {1 << s.SizeLog}, start {s.Start}, event idx {s.EventIdx}, ops [{string.Join(" ", s.Ops.Select(o => $"{o.Kind}:{o.A}:{o.B}"))}]");

    private static void Run(MetadataAccess access, int sizeLog, ushort start, bool eventIdx, Op[] ops)
    {
        int size = 1 << sizeLog;
        using var guest = new TestGuest(4 * MiB);
        var h = new QueueHarness(guest, size, access, eventIndex: eventIdx);
        h.ForceBase(start);
        var offered = new Dictionary<ushort, Offered>();
        var availOrder = new Queue<ushort>(); // offered, in avail order
        int unpublished = 0;
        var held = new List<Held>();            // popped by the device, not completed
        var completed = new Queue<(ushort Head, uint Length, bool Flushed)>();
        var unflushed = new List<(ushort, uint)>();
        var flushed = new Queue<(ushort Head, uint Length)>();
        var returned = new HashSet<int>();
        int offeredTotal = 0, returnedTotal = 0;
        Assert.True(h.Attach());

        void Add(int a, int b)
        {
            int readable = a % 4, writable = b % 4;
            if (readable + writable == 0) readable = 1;
            int n = readable + writable;
            bool indirect = (a / 4) % 3 == 0 && n <= size;
            if (!indirect && n > h.Driver.FreeCount) return;
            if (indirect && h.Driver.FreeCount == 0) return;
            var rng = new Random(a * 10_007 + b);
            // Buffers live in the area of the head they will be chained from (the driver's next free descriptor).
            var lengths = Enumerable.Range(0, n).Select(_ => (uint)rng.Next(1, 600)).ToArray();
            var contents = new byte[lengths.Take(readable).Sum(l => (int)l)];
            rng.NextBytes(contents);
            ushort expectedHead = PeekFreeHead(h.Driver);
            ulong area = Data + expectedHead * AreaSize;
            var buffers = new DriverBuffer[n];
            ulong offset = 0;
            for (int i = 0; i < n; i++)
            {
                buffers[i] = new DriverBuffer(area + offset, lengths[i], i >= readable);
                offset += lengths[i] + (ulong)rng.Next(0, 16);
            }
            int c = 0;
            for (int i = 0; i < readable; i++) { contents.AsSpan(c, (int)lengths[i]).CopyTo(guest.Bytes(buffers[i].GuestAddress, (int)lengths[i])); c += (int)lengths[i]; }
            for (int i = readable; i < n; i++) guest.Bytes(buffers[i].GuestAddress, (int)lengths[i]).Fill(0xCC);
            ushort head;
            bool ok = indirect
                ? h.Driver.TryAddIndirect(guest.DriverView, Tables + expectedHead * 16UL * 16, buffers, out head)
                : h.Driver.TryAdd(buffers, out head);
            Assert.True(ok);
            Assert.Equal(expectedHead, head);
            offered.Add(head, new Offered(head, contents, buffers.Skip(readable).Select(x => (x.GuestAddress, x.Length)).ToArray()));
            availOrder.Enqueue(head);
            unpublished++;
            offeredTotal++;
        }

        void Pop(int count)
        {
            Assert.True(h.Attach());
            for (int i = 0; i < count; i++)
            {
                bool expectSome = availOrder.Count - unpublished > 0;
                bool got = h.Device.TryPop(h.Chain);
                Assert.False(h.Device.IsBroken, h.Device.BrokenReason);
                Assert.Equal(expectSome, got);
                if (!got) return;
                ushort head = availOrder.Dequeue();
                Assert.Equal(head, h.Chain.Id);
                var o = offered[head];
                var bytes = new byte[h.Chain.ReadableBytes];
                h.Chain.CopyFromReadable(0, bytes);
                Assert.Equal(o.Readable, bytes);
                Assert.Equal((uint)o.Writable.Sum(w => w.Length), h.Chain.WritableBytes);
                held.Add(new Held(head, bytes, h.Chain.Writable.ToArray().Select(s => (s.Host, s.Length)).ToArray()));
            }
        }

        void Complete(int pick)
        {
            if (held.Count == 0) return;
            var x = held[pick % held.Count];
            held.Remove(x);
            uint written = 0;
            foreach (var (host, length) in x.Writable)
            {
                unsafe
                {
                    var span = new Span<byte>((void*)host, (int)length);
                    for (int i = 0; i < span.Length && written < x.Readable.Length; i++, written++) span[i] = Echo.Transform(x.Readable[written]);
                }
            }
            h.Device.AddUsed(x.Head, written);
            unflushed.Add((x.Head, written));
        }

        void Flush()
        {
            h.Device.FlushUsed();
            foreach (var u in unflushed) flushed.Enqueue(u);
            unflushed.Clear();
        }

        void Reap()
        {
            while (h.Driver.TryGetUsed(out ushort id, out uint len))
            {
                var (head, length) = flushed.Dequeue();
                Assert.Equal((head, length), (id, len));
                Assert.True(returned.Add(returnedTotal));
                var o = offered[id];
                offered.Remove(id);
                // The bytes the device wrote are there, in order, across the writable buffers.
                int k = 0;
                foreach (var (gpa, wl) in o.Writable)
                {
                    var span = guest.Bytes(gpa, (int)wl);
                    for (int i = 0; i < span.Length; i++, k++)
                        Assert.Equal(k < len ? Echo.Transform(o.Readable[k]) : (byte)0xCC, span[i]);
                }
                returnedTotal++;
            }
            Assert.Empty(flushed); // everything flushed is visible
        }

        foreach (var op in ops)
        {
            switch (op.Kind)
            {
                case 0: case 1: Add(op.A, op.B); break;
                case 2: h.Driver.Publish(); unpublished = 0; break;
                case 3: Pop(1 + op.A % 4); break;
                case 4: Complete(op.A); Complete(op.B); break;
                case 5: Flush(); break;
                case 6: Reap(); break;
            }
            Assert.Equal(offered.Count, h.Driver.InFlight);
        }
        // Drain.
        h.Driver.Publish();
        unpublished = 0;
        Pop(size + 1);
        while (held.Count > 0) Complete(0);
        Flush();
        Reap();
        Assert.Empty(offered);
        Assert.Equal(offeredTotal, returnedTotal);
        Assert.Equal(size, h.Driver.FreeCount);
        Assert.Equal(0, h.Driver.InFlight);
        Assert.Equal(unchecked((ushort)(start + offeredTotal)), h.UsedIdxInRing);
        Assert.Equal(unchecked((ushort)(start + offeredTotal)), h.Device.LastAvailIndex);
        Assert.False(h.Device.IsBroken);
    }

    /// <summary>The driver's next free descriptor (its free list is in the descriptor table it owns).</summary>
    private static ushort PeekFreeHead(SplitDriverQueue driver)
        => (ushort)typeof(SplitDriverQueue).GetField("_freeHead", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(driver)!;
}
