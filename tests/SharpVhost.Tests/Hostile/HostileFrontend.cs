using System.Buffers.Binary;
using System.Net.Sockets;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.Tests.Backend;
using SharpVhost.Tests.Protocol;
using SharpVhost.VhostUser.Frontend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;
using SharpVhost.Virtio;

namespace SharpVhost.Tests.Hostile;

/// <summary>What the backend did with a request we sent with NEED_REPLY.</summary>
public enum Outcome { Ack, Nack, Disconnected }

/// <summary>A queue the hostile frontend set up: the driver side of the ring and its three eventfds.</summary>
internal sealed class HostileQueue(int index, SplitDriverQueue ring, EventFd kick, EventFd call, EventFd err)
{
    public int Index { get; } = index;
    public SplitDriverQueue Ring { get; } = ring;
    public EventFd Kick { get; } = kick;
    public EventFd Call { get; } = call;
    public EventFd Err { get; } = err;
}

/// <summary>Our end of the back-end request channel: the socket (to see what waits unread) and a channel on it.</summary>
internal sealed class BackendRequestChannel(Socket socket) : IDisposable
{
    public Socket Socket { get; } = socket;
    public VhostUserChannel Channel { get; } = new(socket, VhostUserRole.FrontEnd, VhostUserChannelKind.BackendRequests);

    public void Dispose()
    {
        Channel.Dispose();
        Socket.Dispose();
    }
}

/// <summary>
/// A frontend that speaks the real protocol over a real socket but sends whatever a test tells it
/// to: raw bytes, any header, any payload, any fds. Every receive is bounded by the socket timeout.
/// It owns every fd it creates (memfds, eventfds) and closes them on dispose, so a test can count
/// the backend's fds and mappings afterwards.
/// </summary>
internal sealed class HostileFrontend : IDisposable
{
    /// <summary>What we accept of the device's features: no EVENT_IDX, so every used buffer interrupts.</summary>
    public const ulong DriverFeatures = (1ul << VirtioFeatureBits.Version1) | (1ul << VirtioFeatureBits.RingIndirectDesc)
        | (1ul << VirtioFeatureBits.ProtocolFeatures) | (1ul << VirtioBlk.FeatureFlush) | (1ul << VirtioBlk.FeatureMultiQueue);

    public const VhostUserProtocolFeatures Protocol = VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.Config
        | VhostUserProtocolFeatures.MultiQueue | VhostUserProtocolFeatures.ConfigureMemSlots;

    private readonly List<IDisposable> _owned = [];

    public Socket Socket { get; }
    public VhostUserChannel Channel { get; }
    public SharedMemory? Memory { get; private set; }
    public ulong OfferedFeatures { get; private set; }

    private HostileFrontend(Socket socket)
    {
        Socket = socket;
        Channel = new VhostUserChannel(socket, VhostUserRole.FrontEnd);
    }

    public static HostileFrontend Connect(TestServer server) => new(server.ConnectRaw());

    public T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    // ---- sending ----

    /// <summary>Bytes straight onto the socket, with optional fds on the first byte.</summary>
    public void SendRaw(ReadOnlySpan<byte> bytes, ReadOnlySpan<int> fds = default) => UnixSockets.SendWithFds(Socket, bytes, fds);

    /// <summary>A whole message with an arbitrary header (size need not match the payload).</summary>
    public void SendRawMessage(uint request, uint flags, uint size, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        var bytes = new byte[12 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, request);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), size);
        payload.CopyTo(bytes.AsSpan(12));
        SendRaw(bytes, fds);
    }

    /// <summary>Sends a request with NEED_REPLY and reports the acknowledgement, or that the backend hung up.</summary>
    public Outcome Request(FrontEndRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default)
    {
        try { Channel.Send((uint)request, VhostUserHeaderFlags.NeedReply, payload, fds); }
        catch (SocketException e) when (e.SocketErrorCode != SocketError.TimedOut) { return Outcome.Disconnected; }
        return ReadAck(request);
    }

    public Outcome Request<T>(FrontEndRequest request, in T payload, ReadOnlySpan<int> fds = default) where T : struct, IVhostUserPayload<T>
    {
        Span<byte> bytes = stackalloc byte[payload.WireSize];
        payload.Write(bytes);
        return Request(request, bytes, fds);
    }

    public Outcome RequestU64(FrontEndRequest request, ulong value) => Request(request, new U64Payload(value));

    /// <summary>Reads the acknowledgement of <paramref name="request"/>.</summary>
    public Outcome ReadAck(FrontEndRequest request)
    {
        var reply = Receive();
        if (reply is null) return Outcome.Disconnected;
        using (reply)
        {
            Assert.Equal((uint)request, reply.RequestId);
            return reply.ReadU64() == 0 ? Outcome.Ack : Outcome.Nack;
        }
    }

    /// <summary>Receives one reply; null when the backend closed the connection.</summary>
    public VhostUserMessage? Receive()
    {
        try { return Channel.Receive(); }
        catch (SocketException e) when (e.SocketErrorCode != SocketError.TimedOut) { return null; }
    }

    /// <summary>Sends a request that has an explicit reply; null when the backend hung up instead.</summary>
    public VhostUserMessage? Call(FrontEndRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default)
    {
        try { Channel.Send((uint)request, VhostUserHeaderFlags.None, payload, fds); }
        catch (SocketException e) when (e.SocketErrorCode != SocketError.TimedOut) { return null; }
        var reply = Receive();
        if (reply is not null) Assert.Equal((uint)request, reply.RequestId);
        return reply;
    }

    public VhostUserMessage? Call<T>(FrontEndRequest request, in T payload) where T : struct, IVhostUserPayload<T>
    {
        Span<byte> bytes = stackalloc byte[payload.WireSize];
        payload.Write(bytes);
        return Call(request, bytes);
    }

    public ulong GetU64(FrontEndRequest request)
    {
        using var reply = Call(request) ?? throw new Xunit.Sdk.XunitException($"backend hung up on {request}");
        return reply.ReadU64();
    }

    public void Ok(FrontEndRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default)
        => Assert.Equal(Outcome.Ack, Request(request, payload, fds));

    public void Ok<T>(FrontEndRequest request, in T payload, ReadOnlySpan<int> fds = default) where T : struct, IVhostUserPayload<T>
        => Assert.Equal(Outcome.Ack, Request(request, payload, fds));

    /// <summary>The backend answered with an error or hung up: never with success.</summary>
    public static void Refused(Outcome outcome) => Assert.NotEqual(Outcome.Ack, outcome);

    // ---- a well-formed setup, step by step ----

    /// <summary>GET_FEATURES, protocol features with REPLY_ACK, SET_OWNER (no SET_FEATURES yet).</summary>
    /// <summary>GET_FEATURES, protocol features (<see cref="Protocol"/> and <paramref name="extra"/>), SET_OWNER.</summary>
    public void Greet(VhostUserProtocolFeatures extra = 0)
    {
        OfferedFeatures = GetU64(FrontEndRequest.GetFeatures);
        var offered = (VhostUserProtocolFeatures)GetU64(FrontEndRequest.GetProtocolFeatures);
        Assert.Equal(Protocol | extra, offered & (Protocol | extra));
        Ok(FrontEndRequest.SetProtocolFeatures, new U64Payload((ulong)(Protocol | extra)));
        Ok(FrontEndRequest.SetOwner);
    }

    /// <summary>
    /// Hands the backend its request channel (SET_BACKEND_REQ_FD) and returns our end.
    /// <paramref name="sendBuffer"/> sets the backend's send buffer (small: a channel we can let fill up).
    /// </summary>
    public BackendRequestChannel OpenRequestChannel(int? sendBuffer = null)
    {
        var (mine, theirs) = UnixSockets.CreatePair();
        using (theirs)
        {
            if (sendBuffer is int size) theirs.SendBufferSize = size;
            Ok(FrontEndRequest.SetBackendReqFd, default, [(int)theirs.Handle]);
        }
        return new BackendRequestChannel(mine);
    }

    public void SetFeatures(ulong wanted = DriverFeatures) => Ok(FrontEndRequest.SetFeatures, new U64Payload(OfferedFeatures & wanted));

    /// <summary>Greets, sets features, and shares <paramref name="size"/> bytes of memory.</summary>
    public SharedMemory Prepare(ulong size = 1 << 20, ulong features = DriverFeatures, VhostUserProtocolFeatures extraProtocol = 0)
    {
        Greet(extraProtocol);
        SetFeatures(features);
        return ShareMemory(size);
    }

    /// <summary>Makes <paramref name="memory"/> the memory that queues and requests are placed in (after a hand-made table).</summary>
    public void UseMemory(SharedMemory memory) => Memory = memory;

    public SharedMemory ShareMemory(ulong size)
    {
        var memory = Own(new SharedMemory(size));
        var region = new VhostUser.Protocol.MemoryRegion(0, memory.Size, SharedMemory.VirtualBase, 0);
        Ok(FrontEndRequest.SetMemTable, new MemoryTable([region]), [memory.Fd.Fd()]);
        Memory = memory;
        return memory;
    }

    /// <summary>Sets up and starts queue <paramref name="index"/> with rings in shared memory.</summary>
    public HostileQueue StartQueue(int index, int size = 16, SplitRingPlacement? placement = null)
    {
        var memory = Memory ?? throw new InvalidOperationException("share memory first");
        var p = placement ?? SplitRingPlacement.At(memory.Allocate(SplitRingPlacement.At(0, size).End + 16, 4096), size);
        var ring = new SplitDriverQueue(memory.Memory, p, size, eventIndex: false);
        var q = new HostileQueue(index, ring, Own(EventFd.Create(nonBlocking: true)), Own(EventFd.Create(nonBlocking: true)), Own(EventFd.Create(nonBlocking: true)));
        Ok(FrontEndRequest.SetVringNum, new VringState((uint)index, (uint)size));
        Ok(FrontEndRequest.SetVringBase, new VringState((uint)index, 0));
        Ok(FrontEndRequest.SetVringAddr, new VringAddress((uint)index, VringAddressFlags.None,
            memory.ToFrontendVirtual(p.Descriptors), memory.ToFrontendVirtual(p.Used), memory.ToFrontendVirtual(p.Avail), 0));
        Ok(FrontEndRequest.SetVringCall, new VringFd((byte)index, false), [q.Call.Fd]);
        Ok(FrontEndRequest.SetVringErr, new VringFd((byte)index, false), [q.Err.Fd]);
        Ok(FrontEndRequest.SetVringKick, new VringFd((byte)index, false), [q.Kick.Fd]);
        Ok(FrontEndRequest.SetVringEnable, new VringState((uint)index, 1));
        return q;
    }

    // ---- block requests on a queue ----

    /// <summary>Sends GET_ID on <paramref name="q"/> and checks the serial comes back: the queue is alive.</summary>
    public void AssertQueueServes(HostileQueue q, string serial = "hostile-test")
    {
        var memory = Memory!;
        ulong header = memory.Allocate(64, 64);
        var h = memory.GetSpan(header, 64);
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h, VirtioBlk.TypeGetId);
        h[36] = 0xff;
        Assert.True(q.Ring.TryAdd([new DriverBuffer(header, 16, false), new DriverBuffer(header + 16, 20, true), new DriverBuffer(header + 36, 1, true)], out ushort head));
        q.Ring.Publish();
        q.Kick.Signal();
        var (id, length) = WaitUsed(q);
        Assert.Equal(head, id);
        Assert.Equal(21u, length);
        Assert.Equal(VirtioBlk.StatusOk, memory.GetSpan(header + 36, 1)[0]);
        Assert.Equal(serial, System.Text.Encoding.ASCII.GetString(memory.GetSpan(header + 16, serial.Length)));
    }

    /// <summary>Waits (bounded) for the next used element of <paramref name="q"/>.</summary>
    public static (ushort Id, uint Length) WaitUsed(HostileQueue q)
    {
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        Span<int> fds = [q.Call.Fd];
        while (DateTime.UtcNow < deadline)
        {
            if (q.Ring.TryGetUsed(out ushort id, out uint length)) return (id, length);
            if (EventFd.WaitAny(fds, 100) == 0) q.Call.TryConsume();
        }
        throw new Xunit.Sdk.XunitException($"queue {q.Index}: no used buffer");
    }

    /// <summary>
    /// Waits (bounded) for used element number <paramref name="n"/> (counting from 0) straight from the
    /// ring, for chains offered with <see cref="OfferRaw"/> (the driver's bookkeeping does not know them).
    /// </summary>
    public (ushort Id, uint Length) WaitUsedRaw(HostileQueue q, ushort n = 0)
    {
        var m = Memory!.Memory;
        var deadline = DateTime.UtcNow + TestServer.Timeout;
        while (DateTime.UtcNow < deadline)
        {
            if ((ushort)(m.Read<ushort>(q.Ring.Placement.Used + 2) - n) is > 0 and <= 0x8000)
            {
                ulong element = m.Read<ulong>(q.Ring.Placement.Used + 4 + 8ul * (ulong)(n % q.Ring.Size));
                return ((ushort)element, (uint)(element >> 32));
            }
            Thread.Sleep(1);
        }
        throw new Xunit.Sdk.XunitException($"queue {q.Index}: no used buffer {n}");
    }

    /// <summary>Waits (bounded) for the backend to signal the queue's error eventfd: it declared the queue broken.</summary>
    public static void AssertBroken(HostileQueue q)
    {
        Span<int> fds = [q.Err.Fd];
        Assert.True(EventFd.WaitAny(fds, (int)TestServer.Timeout.TotalMilliseconds) == 0, $"queue {q.Index}: error eventfd never signalled");
        Assert.True(q.Err.TryConsume());
    }

    /// <summary>Writes raw descriptor <paramref name="index"/> of the queue's table (hostile chains).</summary>
    public void WriteDescriptor(HostileQueue q, int index, VirtqDescriptor d)
        => Memory!.Memory.Write(q.Ring.Placement.Descriptors + (ulong)index * 16, d);

    /// <summary>Makes head <paramref name="head"/> available as the next entry and kicks (bypassing the driver's bookkeeping).</summary>
    public void OfferRaw(HostileQueue q, ushort head, ushort? availIndex = null)
    {
        var m = Memory!.Memory;
        ushort idx = m.Read<ushort>(q.Ring.Placement.Avail + 2);
        m.Write(q.Ring.Placement.Avail + 4 + 2ul * (ulong)(idx % q.Ring.Size), head);
        Thread.MemoryBarrier();
        m.Write(q.Ring.Placement.Avail + 2, availIndex ?? (ushort)(idx + 1));
        q.Kick.Signal();
    }

    public void Dispose()
    {
        Channel.Dispose();
        foreach (var d in Enumerable.Reverse(_owned)) d.Dispose();
    }
}
