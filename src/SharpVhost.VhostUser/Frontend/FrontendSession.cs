using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;
using SharpVhost.Virtio;

namespace SharpVhost.VhostUser.Frontend;

/// <summary>
/// The driver half of vhost-user, device-agnostic: connects to any backend (ours, qemu-storage-daemon,
/// DPDK), negotiates features, shares memory from a memfd and sets up split or packed rings, as QEMU would.
/// Device clients (block, net) build on it. Control calls are not thread-safe: one owner drives them.
/// </summary>
public sealed class FrontendSession : IDisposable
{
    /// <summary>Protocol features we use when the backend offers them.</summary>
    public const VhostUserProtocolFeatures Wanted = VhostUserProtocolFeatures.MultiQueue | VhostUserProtocolFeatures.ReplyAck
        | VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.ConfigureMemSlots;

    private readonly FrontEndConnection _connection;
    private readonly List<FrontendQueue> _queues = [];

    public ulong BackendFeatures { get; }
    public ulong Features { get; private set; }
    public VhostUserProtocolFeatures ProtocolFeatures { get; }
    public int MaxQueues { get; }
    public SharedMemory? Memory { get; private set; }
    /// <summary>
    /// The virtual IOMMU when the session was opened with one: ring and buffer addresses are then
    /// IOVAs (this library uses IOVA = guest-physical), which the backend translates with IOTLB
    /// entries it asks for; the caller maps and unmaps them as a guest's IOMMU driver would.
    /// </summary>
    public FrontendIommu? Iommu { get; }

    private FrontendSession(Socket socket, ILogger? logger, bool iommu)
    {
        _connection = new FrontEndConnection(socket, logger);
        BackendFeatures = _connection.GetU64(FrontEndRequest.GetFeatures);
        if (!VirtioFeatureBits.Has(BackendFeatures, VirtioFeatureBits.ProtocolFeatures))
            throw new VhostUserSessionFailedException("backend does not offer VHOST_USER_F_PROTOCOL_FEATURES");
        var offered = (VhostUserProtocolFeatures)_connection.GetU64(FrontEndRequest.GetProtocolFeatures);
        var wanted = Wanted | (iommu ? VhostUserProtocolFeatures.BackendReq : 0);
        ProtocolFeatures = offered & wanted;
        if (iommu && (!VirtioFeatureBits.Has(BackendFeatures, VirtioFeatureBits.AccessPlatform)
            || (ProtocolFeatures & IommuProtocolFeatures) != IommuProtocolFeatures))
            throw new VhostUserSessionFailedException("backend does not offer ACCESS_PLATFORM with BACKEND_REQ and REPLY_ACK (needed behind an IOMMU)");
        _connection.SetU64(FrontEndRequest.SetProtocolFeatures, (ulong)ProtocolFeatures);
        _connection.ReplyAck = ProtocolFeatures.HasFlag(VhostUserProtocolFeatures.ReplyAck);
        MaxQueues = ProtocolFeatures.HasFlag(VhostUserProtocolFeatures.MultiQueue) ? (int)_connection.GetU64(FrontEndRequest.GetQueueNum) : 1;
        _connection.Send(FrontEndRequest.SetOwner);
        if (iommu) Iommu = new FrontendIommu(_connection, logger);
    }

    private const VhostUserProtocolFeatures IommuProtocolFeatures = VhostUserProtocolFeatures.BackendReq | VhostUserProtocolFeatures.ReplyAck;

    /// <summary>
    /// Connects to a backend listening on <paramref name="socketPath"/> and performs the opening handshake.
    /// With <paramref name="iommu"/> the device sits behind a virtual IOMMU (see <see cref="Iommu"/>).
    /// </summary>
    public static FrontendSession Connect(string socketPath, ILogger? logger = null, TimeSpan? timeout = null, bool iommu = false)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Connect(new UnixDomainSocketEndPoint(socketPath));
                return new FrontendSession(socket, logger, iommu);
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                socket.Dispose();
                Thread.Sleep(20); // the backend may still be starting
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    /// <summary>Accepts the backend's offer restricted to <paramref name="wanted"/> (the protocol-features bit is kept).</summary>
    public ulong NegotiateFeatures(ulong wanted)
    {
        Features = BackendFeatures & (wanted | VirtioFeatureBits.Bit(VirtioFeatureBits.ProtocolFeatures)
            | (Iommu is not null ? VirtioFeatureBits.Bit(VirtioFeatureBits.AccessPlatform) : 0));
        _connection.SetU64(FrontEndRequest.SetFeatures, Features);
        return Features;
    }

    /// <summary>Creates the shared memory and tells the backend about it (SET_MEM_TABLE).</summary>
    public SharedMemory ShareMemory(ulong size)
    {
        if (Memory is not null) throw new InvalidOperationException("memory is already shared");
        var memory = new SharedMemory(size);
        var region = new Protocol.MemoryRegion(memory.Region.GuestPhysicalAddress, memory.Region.Size, memory.Region.FrontendVirtualAddress, 0);
        var table = new MemoryTable([region]);
        Span<byte> bytes = stackalloc byte[table.WireSize];
        table.Write(bytes);
        Span<int> fds = [(int)memory.Fd.DangerousGetHandle()];
        _connection.Send(FrontEndRequest.SetMemTable, bytes, fds);
        Memory = memory;
        return memory;
    }

    /// <summary>Reads <paramref name="size"/> bytes of the device's config space.</summary>
    public byte[] GetConfig(uint offset, int size)
    {
        var request = new ConfigSpace(offset, ConfigSpaceFlags.Writable, new byte[size]);
        return _connection.Call<ConfigSpace, ConfigSpace>(FrontEndRequest.GetConfig, request).Data;
    }

    /// <summary>Sets up queue <paramref name="index"/> with <paramref name="size"/> entries in shared memory, and starts it.</summary>
    public FrontendQueue StartQueue(int index, int size)
    {
        var memory = Memory ?? throw new InvalidOperationException("share memory first");
        if (index >= MaxQueues) throw new ArgumentOutOfRangeException(nameof(index), $"backend has {MaxQueues} queues");
        bool eventIndex = VirtioFeatureBits.Has(Features, VirtioFeatureBits.RingEventIdx);
        IDriverQueue ring;
        ulong desc, used, avail;
        uint vringBase;
        if (VirtioFeatureBits.Has(Features, VirtioFeatureBits.RingPacked))
        {
            // Packed: SET_VRING_ADDR's used and avail fields carry the device and driver areas; the base
            // starts at position 0 with both wrap counters at 1 (avail in bit 15, used in bit 31).
            var placement = PackedRingPlacement.At(memory.Allocate(PackedRingPlacement.At(0, size).End + 16, 4096), size);
            ring = new PackedDriverQueue(memory.Memory, placement, size, eventIndex);
            (desc, used, avail) = (placement.Descriptors, placement.DeviceArea, placement.DriverArea);
            vringBase = 0x8000_8000;
        }
        else
        {
            var placement = SplitRingPlacement.At(memory.Allocate(SplitRingPlacement.At(0, size).End + 16, 4096), size);
            ring = new SplitDriverQueue(memory.Memory, placement, size, eventIndex);
            (desc, used, avail) = (placement.Descriptors, placement.Used, placement.Avail);
            vringBase = 0;
        }
        var kick = EventFd.Create(nonBlocking: true);
        var call = EventFd.Create(nonBlocking: true);
        var queue = new FrontendQueue(index, ring, kick, call);
        _connection.Send(FrontEndRequest.SetVringNum, new VringState((uint)index, (uint)size));
        _connection.Send(FrontEndRequest.SetVringBase, new VringState((uint)index, vringBase));
        // Behind an IOMMU ring addresses are IOVAs (here equal to guest-physical), else frontend-virtual.
        Func<ulong, ulong> ringAddress = Iommu is not null ? gpa => gpa : memory.ToFrontendVirtual;
        _connection.Send(FrontEndRequest.SetVringAddr, new VringAddress((uint)index, VringAddressFlags.None,
            ringAddress(desc), ringAddress(used), ringAddress(avail), 0));
        SendVringFd(FrontEndRequest.SetVringCall, index, call.Fd);
        SendVringFd(FrontEndRequest.SetVringKick, index, kick.Fd);
        _connection.Send(FrontEndRequest.SetVringEnable, new VringState((uint)index, 1));
        _queues.Add(queue);
        return queue;
    }

    private void SendVringFd(FrontEndRequest request, int index, int fd)
    {
        Span<int> fds = [fd];
        _connection.Send(request, new U64Payload(new VringFd((byte)index, false).ToU64()), fds);
    }

    /// <summary>Enables or disables a started queue (SET_VRING_ENABLE).</summary>
    public void EnableQueue(int index, bool enabled)
        => _connection.Send(FrontEndRequest.SetVringEnable, new VringState((uint)index, enabled ? 1u : 0u));

    /// <summary>Stops a queue (GET_VRING_BASE) and returns the backend's next avail index.</summary>
    public uint StopQueue(int index)
        => _connection.Call<VringState, VringState>(FrontEndRequest.GetVringBase, new VringState((uint)index, 0)).Num;

    public void Dispose()
    {
        _connection.Channel.Shutdown();
        Iommu?.Dispose();
        _connection.Dispose();
        foreach (var q in _queues) q.Dispose();
        Memory?.Dispose();
    }
}

/// <summary>The backend cannot serve what this frontend needs.</summary>
public sealed class VhostUserSessionFailedException(string message) : Exception(message);
