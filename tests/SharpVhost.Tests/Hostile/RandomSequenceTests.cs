using System.Buffers.Binary;
using SharpVhost.Interop;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using Microsoft.Win32.SafeHandles;

namespace SharpVhost.Tests.Hostile;

/// <summary>
/// Random message sequences over a real socket (fixed seeds, so a failure replays): requests of
/// every kind with plausible or garbage payloads, right or wrong fds, memory filled with noise,
/// rings pointed anywhere and kicked. Every request carries NEED_REPLY, so the backend owes exactly
/// one answer to each (its own reply or an acknowledgement) unless it hangs up; the server must
/// then serve a well-behaved frontend and leak nothing (see <see cref="Attack"/>).
/// </summary>
[Collection(FdCountingCollection.Name)]
public class RandomSequenceTests
{
    private const ulong MemorySize = 1 << 20;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void RandomMessagesGetOneAnswerEachOrAHangUp(int seed)
    {
        Attack.Run((server, first) =>
        {
            var random = new Random(seed);
            var h = first;
            using var memfd = FileDescriptors.CreateMemfd("hostile-random", (long)MemorySize);
            using (var local = MemoryMapping.Map(memfd, 0, MemorySize, writable: true))
                random.NextBytes(local.GetSpan(0, (int)MemorySize));
            var eventFds = Enumerable.Range(0, 4).Select(_ => EventFd.Create(nonBlocking: true)).ToArray();
            try
            {
                Prologue(random, h, memfd, eventFds);
                int answered = 0, hangUps = 0;
                for (int i = 0; i < 400; i++)
                {
                    var (request, payload, fds) = Next(random, memfd, eventFds);
                    bool sent = true;
                    try { h.Channel.Send(request, VhostUserHeaderFlags.NeedReply, payload, fds); }
                    catch (System.Net.Sockets.SocketException) { sent = false; }
                    using (var reply = sent ? h.Receive() : null)
                    {
                        if (reply is not null)
                        {
                            Assert.Equal(request, reply.RequestId);
                            answered++;
                            if (random.Next(4) == 0) eventFds[random.Next(eventFds.Length)].Signal();
                            continue;
                        }
                    }
                    // The backend hung up (a request it could not answer): carry on with a new connection.
                    hangUps++;
                    if (h != first) h.Dispose();
                    h = HostileFrontend.Connect(server);
                    Prologue(random, h, memfd, eventFds);
                }
                if (h != first) h.Dispose();
                Assert.True(answered > 200, $"only {answered} answers ({hangUps} hang-ups)");
            }
            finally
            {
                foreach (var e in eventFds) e.Dispose();
            }
        });
    }

    /// <summary>
    /// Most connections start the way a real frontend does, with queues running over the noise in
    /// memory, so that the random messages that follow hit live rings too.
    /// </summary>
    private static void Prologue(Random r, HostileFrontend h, SafeFileHandle memfd, EventFd[] eventFds)
    {
        if (r.Next(4) == 0) return;
        h.Greet();
        h.SetFeatures();
        h.Ok(FrontEndRequest.SetMemTable, new MemoryTable([new VhostUser.Protocol.MemoryRegion(0, MemorySize, SharedMemory.VirtualBase, 0)]),
            [(int)memfd.DangerousGetHandle()]);
        for (uint q = 0; q < 2; q++)
        {
            h.Ok(FrontEndRequest.SetVringNum, new VringState(q, (uint)Pick(r, 2, 16, 256)));
            h.Ok(FrontEndRequest.SetVringAddr, new VringAddress(q, VringAddressFlags.None, Address(r), Address(r), Address(r), 0));
            h.Ok(FrontEndRequest.SetVringErr, new VringFd((byte)q, false), [eventFds[0].Fd]);
            h.Ok(FrontEndRequest.SetVringKick, new VringFd((byte)q, false), [eventFds[1 + q].Fd]);
            h.Ok(FrontEndRequest.SetVringEnable, new VringState(q, 1));
        }
        eventFds[1].Signal();
        eventFds[2].Signal();
    }

    private static readonly ulong[] Nums = [0, 1, 2, 3, 8, 16, 32, 100, 256, 32768, 65535, 65536, uint.MaxValue];

    private static ulong Address(Random r) => r.Next(6) switch
    {
        0 => (ulong)r.NextInt64(),
        1 => SharedMemory.VirtualBase + (ulong)r.Next((int)MemorySize) / 16 * 16,
        2 => SharedMemory.VirtualBase + MemorySize - (ulong)r.Next(64),
        _ => SharedMemory.VirtualBase + (ulong)r.Next(16) * 4096,
    };

    private static ulong Pick(Random r, params ulong[] values) => values[r.Next(values.Length)];

    private static (uint Request, byte[] Payload, int[] Fds) Next(Random r, SafeFileHandle memfd, EventFd[] eventFds)
    {
        int memory = (int)memfd.DangerousGetHandle();
        int AnEventFd() => eventFds[r.Next(eventFds.Length)].Fd;
        uint request = r.Next(20) == 0 ? (uint)r.Next(41, 300) : (uint)r.Next(1, 41);
        var p = new byte[64];
        int length;
        int[] fds = [];
        switch ((FrontEndRequest)request)
        {
            case FrontEndRequest.SetFeatures:
            case FrontEndRequest.SetProtocolFeatures:
            case FrontEndRequest.SetStatus:
                BinaryPrimitives.WriteUInt64LittleEndian(p, r.Next(3) == 0 ? (ulong)r.NextInt64() : Pick(r, 0, 0x1_7000_0000, 0x1_5000_1644, 0x8209, 0xb, 0x1ff));
                length = 8;
                break;
            case FrontEndRequest.SetMemTable:
            {
                int count = r.Next(0, 4);
                BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)count);
                p = new byte[8 + 32 * Math.Max(count, 1)];
                BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)count);
                for (int i = 0; i < count; i++) WriteRegion(r, p.AsSpan(8 + 32 * i));
                length = 8 + 32 * count;
                fds = Enumerable.Repeat(memory, count).ToArray();
                break;
            }
            case FrontEndRequest.AddMemReg:
            case FrontEndRequest.RemMemReg:
                WriteRegion(r, p.AsSpan(8));
                length = 40;
                if ((FrontEndRequest)request == FrontEndRequest.AddMemReg) fds = [memory];
                break;
            case FrontEndRequest.SetVringNum:
            case FrontEndRequest.SetVringBase:
            case FrontEndRequest.GetVringBase:
            case FrontEndRequest.SetVringEnable:
                BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)r.Next(4));
                BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), (uint)Nums[r.Next(Nums.Length)]);
                length = 8;
                break;
            case FrontEndRequest.SetVringAddr:
                BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)r.Next(3));
                BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), (uint)r.Next(2));
                for (int i = 0; i < 4; i++) BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8 + 8 * i), Address(r));
                length = 40;
                break;
            case FrontEndRequest.SetVringKick:
            case FrontEndRequest.SetVringCall:
            case FrontEndRequest.SetVringErr:
            {
                bool noFd = r.Next(5) == 0;
                BinaryPrimitives.WriteUInt64LittleEndian(p, (ulong)(uint)r.Next(3) | (noFd ? 1ul << 8 : 0ul));
                length = 8;
                fds = noFd ? [] : [AnEventFd()];
                break;
            }
            case FrontEndRequest.GetConfig:
            case FrontEndRequest.SetConfig:
            {
                int size = r.Next(0, 70);
                BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)r.Next(0, 80));
                BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), (uint)size);
                p = [.. p.AsSpan(0, 12), .. new byte[size]];
                length = 12 + size;
                break;
            }
            case FrontEndRequest.SetLogBase:
            case FrontEndRequest.SetInflightFd:
            case FrontEndRequest.GetInflightFd:
                BinaryPrimitives.WriteUInt64LittleEndian(p, Pick(r, 0, 4096, 8192, MemorySize, MemorySize + 1));
                BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8), Pick(r, 0, 4096, 100));
                BinaryPrimitives.WriteUInt16LittleEndian(p.AsSpan(16), (ushort)r.Next(0, 4));
                BinaryPrimitives.WriteUInt16LittleEndian(p.AsSpan(18), (ushort)Pick(r, 16, 32, 3));
                length = (FrontEndRequest)request == FrontEndRequest.SetLogBase ? 16 : 24;
                if ((FrontEndRequest)request != FrontEndRequest.GetInflightFd) fds = [r.Next(4) == 0 ? AnEventFd() : memory];
                break;
            default:
                length = r.Next(3) == 0 ? 8 : 0;
                break;
        }
        // Now and then the payload or the fds are simply wrong.
        if (r.Next(12) == 0) length = r.Next(0, p.Length + 1);
        if (r.Next(12) == 0) fds = Enumerable.Range(0, r.Next(0, 4)).Select(_ => r.Next(2) == 0 ? memory : AnEventFd()).ToArray();
        return (request, p.AsSpan(0, Math.Min(length, p.Length)).ToArray(), fds);
    }

    private static void WriteRegion(Random r, Span<byte> region)
    {
        bool sane = r.Next(3) != 0;
        ulong size = sane ? Pick(r, MemorySize, MemorySize / 2, 4096) : Pick(r, 0, MemorySize + 4096, ulong.MaxValue, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(region, sane ? Pick(r, 0, MemorySize / 2, 1 << 30) : (ulong)r.NextInt64());
        BinaryPrimitives.WriteUInt64LittleEndian(region[8..], size);
        BinaryPrimitives.WriteUInt64LittleEndian(region[16..], sane ? SharedMemory.VirtualBase + Pick(r, 0, MemorySize / 2) : (ulong)r.NextInt64());
        BinaryPrimitives.WriteUInt64LittleEndian(region[24..], sane ? Pick(r, 0, MemorySize / 2, 4096) : Pick(r, 1, MemorySize, ulong.MaxValue));
    }
}
