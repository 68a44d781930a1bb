using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;
using SharpVhost.Memory;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;
using SharpVhost.Virtio;
using GuestRegion = SharpVhost.Memory.MemoryRegion;

namespace SharpVhost.VhostUser.Backend;

/// <summary>
/// The device-agnostic backend side of one vhost-user connection: a readable state machine over
/// the frontend's messages. Memory and ring changes all go through <see cref="GuestMemoryDomain"/>,
/// so when a reply is sent no worker can touch what the message replaced. A bad message gets an error
/// (a NACK with REPLY_ACK) and leaves everything else as it was; a message we cannot answer in kind
/// (a failed GET_*) or a broken byte stream ends the connection.
/// </summary>
public sealed class BackendSession : IDisposable
{
    private const ulong AlwaysOfferedProtocolFeatures = (ulong)(VhostUserProtocolFeatures.LogShmFd | VhostUserProtocolFeatures.ReplyAck
        | VhostUserProtocolFeatures.ResetDevice | VhostUserProtocolFeatures.ConfigureMemSlots | VhostUserProtocolFeatures.Status
        | VhostUserProtocolFeatures.BackendReq | VhostUserProtocolFeatures.InflightShmFd);

    private readonly IVhostUserDevice _device;
    private readonly BackendOptions _options;
    private readonly ILogger _log;
    private readonly GuestMemoryDomain _memory = new();
    private readonly QueueSlot[] _queues;
    private VhostUserChannel? _channel;
    private BackEndRequestChannel? _backendChannel;
    private ulong _features;
    private ulong _protocolFeatures;
    private bool _featuresSet;
    private readonly Dictionary<RegionDescription, int> _regionRepeats = []; // ADD_MEM_REG repeats of a mapped region
    private DirtyLog? _pendingLog; // from SET_LOG_BASE; published while LOG_ALL is negotiated
    private long _dirtyBitsSet; // by logs already retired, for the summary
    private byte _status;
    private InflightArea? _inflight;
    private readonly IDisposable _metrics;

    public BackendSession(IVhostUserDevice device, BackendOptions options, ILogger logger)
    {
        _device = device;
        _options = options;
        _log = logger;
        _memory.InFlightWait = options.InFlightWait;
        _memory.CancelWait = options.CancelWait;
        _queues = Enumerable.Range(0, device.QueueCount).Select(i => new QueueSlot(i, options.Metadata)).ToArray();
        _metrics = BackendMetrics.Register(device.Kind, () => _queues.Select(q => q.Queue));
    }

    /// <summary>
    /// The device's features, plus what the session itself implements: protocol features, and
    /// ACCESS_PLATFORM (a device behind a virtual IOMMU; QEMU negotiates it only with iommu_platform=on).
    /// </summary>
    public ulong OfferedFeatures => _device.Features | VirtioFeatureBits.Bit(VirtioFeatureBits.ProtocolFeatures)
        | VirtioFeatureBits.Bit(VirtioFeatureBits.AccessPlatform);
    public ulong OfferedProtocolFeatures => AlwaysOfferedProtocolFeatures | _device.ExtraProtocolFeatures;
    public GuestMemoryDomain Memory => _memory;
    public IReadOnlyList<IDeviceQueue> Queues => _queues.Select(q => q.Queue).ToArray();
    public ulong NegotiatedFeatures => _features;

    /// <summary>Serves one connected frontend until it disconnects, the stream breaks, or <paramref name="cancel"/> fires.</summary>
    public void Serve(Socket socket, CancellationToken cancel = default)
    {
        using var channel = new VhostUserChannel(socket, VhostUserRole.BackEnd, VhostUserChannelKind.Main, _log);
        _channel = channel;
        using var stop = cancel.Register(() => { try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { } });
        try
        {
            while (!cancel.IsCancellationRequested && ServeOne(channel)) { }
        }
        finally
        {
            StopEverything();
            LogSummary();
            _channel = null;
        }
    }

    /// <summary>Receives and handles one message; false when the connection should end.</summary>
    private bool ServeOne(VhostUserChannel channel)
    {
        VhostUserMessage? message;
        try
        {
            message = channel.Receive();
        }
        catch (VhostUserMessageRejectedException e)
        {
            _log.LogWarning("rejected message: {Reason}", e.Message);
            if (HasExplicitReply((FrontEndRequest)e.Header.Request)) return TryReplyWithError(channel, e.Header);
            return TryAcknowledge(channel, e.Header, false);
        }
        catch (Exception e) when (e is VhostUserProtocolException or SocketException or ObjectDisposedException)
        {
            _log.LogInformation("connection ended: {Reason}", e.Message);
            return false;
        }
        if (message is null) return false;
        using (message)
        {
            bool ok;
            try
            {
                Dispatch(message);
                ok = true;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Our reply hit a connection the frontend already closed: the session is over, not the server.
                _log.LogInformation("connection ended while answering {Request}: {Reason}", message.FrontEndRequest, e.Message);
                return false;
            }
            catch (Exception e) when (e is VhostUserSessionException or VhostUserProtocolException or GuestMemoryException
                or VirtqueueException or IOException or ArgumentException)
            {
                _log.LogWarning("{Request} refused: {Reason}", message.FrontEndRequest, e.Message);
                if (HasExplicitReply(message.FrontEndRequest)) return TryReplyWithError(channel, message.Header);
                ok = false;
            }
            if (!HasExplicitReply(message.FrontEndRequest)) return TryAcknowledge(channel, message.Header, ok);
        }
        return true;
    }

    /// <summary>
    /// A request with a reply of its own failed. GET_CONFIG has an error form (an empty payload, as
    /// libvhost-user sends); for the others the frontend waits for a reply we cannot give, so the
    /// connection ends. Returns whether to go on.
    /// </summary>
    private bool TryReplyWithError(VhostUserChannel channel, in VhostUserHeader header)
    {
        if ((FrontEndRequest)header.Request != FrontEndRequest.GetConfig) return false;
        try
        {
            channel.Send(header.Request, VhostUserHeaderFlags.Reply, []);
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>
    /// Sends the REPLY_ACK status if the frontend asked for one. The channel's table counts SET_LOG_BASE
    /// as explicitly answered, which is true only with LOG_SHMFD, so without it the status is sent here.
    /// False when the connection is gone.
    /// </summary>
    private bool TryAcknowledge(VhostUserChannel channel, in VhostUserHeader header, bool ok)
    {
        try
        {
            if (header.NeedReply && !channel.Acknowledge(header, ok))
                channel.Send(header.Request, VhostUserHeaderFlags.Reply, BitConverter.GetBytes(ok ? 0UL : 1UL));
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            _log.LogInformation("connection ended while acknowledging {Request}: {Reason}", (FrontEndRequest)header.Request, e.Message);
            return false;
        }
    }

    /// <summary>
    /// Requests the frontend waits on a reply of their own for: a failure ends the connection (there is no
    /// way to say no). SET_LOG_BASE has one only with LOG_SHMFD; the rest follow the protocol's table.
    /// </summary>
    private bool HasExplicitReply(FrontEndRequest request) =>
        request == FrontEndRequest.SetLogBase ? Has(VhostUserProtocolFeatures.LogShmFd) : MessageRules.HasExplicitReply(request);

    private bool Has(VhostUserProtocolFeatures feature) => (_protocolFeatures & (ulong)feature) != 0;

    private void Dispatch(VhostUserMessage m)
    {
        var channel = _channel!;
        switch (m.FrontEndRequest)
        {
            case FrontEndRequest.GetFeatures: channel.SendReplyU64(m, OfferedFeatures); break;
            case FrontEndRequest.SetFeatures: SetFeatures(m.ReadU64()); break;
            case FrontEndRequest.SetOwner: break;
            case FrontEndRequest.ResetOwner: ResetDevice(); break;
            case FrontEndRequest.GetProtocolFeatures: channel.SendReplyU64(m, OfferedProtocolFeatures); break;
            case FrontEndRequest.SetProtocolFeatures: SetProtocolFeatures(m.ReadU64()); break;
            case FrontEndRequest.GetQueueNum: channel.SendReplyU64(m, (ulong)_queues.Length); break;
            case FrontEndRequest.GetMaxMemSlots: channel.SendReplyU64(m, GuestMemory.MaxRegions); break;
            case FrontEndRequest.SetMemTable: SetMemTable(m); break;
            case FrontEndRequest.AddMemReg: AddMemReg(m); break;
            case FrontEndRequest.RemMemReg: RemMemReg(m); break;
            case FrontEndRequest.SetVringNum: SetVringNum(m.ParsePayload<VringState>()); break;
            case FrontEndRequest.SetVringAddr: SetVringAddr(m.ParsePayload<VringAddress>()); break;
            case FrontEndRequest.SetVringBase: SetVringBase(m.ParsePayload<VringState>()); break;
            case FrontEndRequest.GetVringBase: channel.SendReply(m, GetVringBase(m.ParsePayload<VringState>())); break;
            case FrontEndRequest.SetVringKick: SetVringFd(m, FrontEndRequest.SetVringKick); break;
            case FrontEndRequest.SetVringCall: SetVringFd(m, FrontEndRequest.SetVringCall); break;
            case FrontEndRequest.SetVringErr: SetVringFd(m, FrontEndRequest.SetVringErr); break;
            case FrontEndRequest.SetVringEnable: SetVringEnable(m.ParsePayload<VringState>()); break;
            case FrontEndRequest.GetConfig: channel.SendReply(m, GetConfig(m.ParsePayload<ConfigSpace>())); break;
            case FrontEndRequest.SetConfig: SetConfig(m.ParsePayload<ConfigSpace>()); break;
            case FrontEndRequest.SetLogBase: SetLogBase(m); break;
            case FrontEndRequest.SetLogFd: m.Fds.Take(0).Dispose(); break; // we never signal log syncs; just own and close it
            case FrontEndRequest.SetBackendReqFd: SetBackendReqFd(m); break;
            case FrontEndRequest.IotlbMsg: IotlbMessageReceived(m.ParsePayload<IotlbMessage>()); break;
            case FrontEndRequest.GetInflightFd: GetInflightFd(m); break;
            case FrontEndRequest.SetInflightFd: SetInflightFd(m); break;
            case FrontEndRequest.ResetDevice: ResetDevice(); break;
            case FrontEndRequest.SetStatus: SetStatus(m.ReadU64()); break;
            case FrontEndRequest.GetStatus: channel.SendReplyU64(m, _status); break;
            case FrontEndRequest.NetSetMtu:
                if (!NetControl(m).SetMtu((int)Math.Min(m.ReadU64(), int.MaxValue))) throw new VhostUserSessionException("MTU refused by the device");
                break;
            case FrontEndRequest.SendRarp:
                if (m.Payload.Length < 6) throw new VhostUserSessionException("SEND_RARP without a MAC address");
                NetControl(m).SendRarp(m.Payload[..6]);
                break;
            default: throw new VhostUserSessionException($"request {m.FrontEndRequest} ({m.RequestId}) is not supported");
        }
    }

    private INetControl NetControl(VhostUserMessage m) => _device as INetControl
        ?? throw new VhostUserSessionException($"{m.FrontEndRequest} is only for net devices");

    // ---- features ----

    private void SetFeatures(ulong features)
    {
        if ((features & ~OfferedFeatures) != 0) throw new VhostUserSessionException($"features {features & ~OfferedFeatures:x} were not offered");
        // The ring layout follows RING_PACKED, and this is the one place it changes. QEMU sets features
        // before it configures rings and toggles only LOG_ALL while they run; a layout change under a
        // running ring would leave that queue, its inflight share and its tracker disagreeing: refused.
        var layout = RingLayouts.FromFeatures(features);
        if (layout != Layout && _queues.Any(q => q.Running))
            throw new VhostUserSessionException($"the ring layout cannot change to {layout} while queues run");
        bool loggingBefore = LoggingWanted;
        _features = features;
        _featuresSet = true;
        foreach (var q in _queues)
        {
            if (q.Queue.Layout != layout)
            {
                q.Queue = layout.CreateDeviceQueue(q.Index, _options.Metadata);
                q.SizeSet = q.AddressSet = false; // the new queue knows neither: a kick must wait for them again
            }
            q.Queue.EventIndex = VirtioFeatureBits.Has(features, VirtioFeatureBits.RingEventIdx);
            q.Queue.NotifyOnEmpty = VirtioFeatureBits.Has(features, VirtioFeatureBits.NotifyOnEmpty);
        }
        _device.OnFeaturesNegotiated(features);
        if (loggingBefore != LoggingWanted) ApplyLog();
        // With no ring running this is a device (re)start, and QEMU sends no invalidation for what the
        // previous driver mapped (e.g. the firmware's identity translations, from before the guest kernel
        // turned its IOMMU on): start from an empty IOTLB, as the kernel's vhost does at SET_FEATURES.
        // A LOG_ALL toggle on running rings keeps it. With ACCESS_PLATFORM, ring and buffer addresses are IOVAs.
        _memory.UseIotlb(IommuPlatform, startEmpty: !_queues.Any(q => q.Running));
    }

    private bool IommuPlatform => VirtioFeatureBits.Has(_features, VirtioFeatureBits.AccessPlatform);

    private void SetProtocolFeatures(ulong features)
    {
        if ((features & ~OfferedProtocolFeatures) != 0) throw new VhostUserSessionException($"protocol features {features & ~OfferedProtocolFeatures:x} were not offered");
        _protocolFeatures = features;
    }

    private bool ProtocolFeaturesNegotiated => VirtioFeatureBits.Has(_features, VirtioFeatureBits.ProtocolFeatures);
    private bool LoggingWanted => VirtioFeatureBits.Has(_features, VirtioFeatureBits.LogAll);

    // ---- memory ----

    private void SetMemTable(VhostUserMessage m)
    {
        var table = m.ParsePayload<MemoryTable>();
        if (m.Fds.Count != table.Regions.Length) throw new VhostUserSessionException($"memory table has {table.Regions.Length} regions but {m.Fds.Count} fds");
        var mapped = new List<GuestRegion>();
        try
        {
            for (int i = 0; i < table.Regions.Length; i++)
            {
                using var fd = m.Fds.Take(i);
                GuardAgainstShrinking(fd, $"memory region {i}");
                mapped.Add(GuestRegion.Map(fd, ToDescription(table.Regions[i])));
            }
            _memory.ReplaceAll(mapped);
            _regionRepeats.Clear();
        }
        catch
        {
            foreach (var r in mapped) r.Dispose();
            throw;
        }
        _log.LogInformation("memory table: {Regions}", string.Join("; ", mapped));
    }

    private void AddMemReg(VhostUserMessage m)
    {
        var region = m.ParsePayload<SingleMemoryRegion>().Region;
        if (m.Fds.Count != 1) throw new VhostUserSessionException("ADD_MEM_REG needs exactly one fd");
        using var fd = m.Fds.Take(0);
        // QEMU sends every region once per vhost device, and a multiqueue net device is one vhost
        // device per queue pair on the same connection: count identical repeats instead of refusing them.
        var key = ToDescription(region);
        if (_memory.Current.Regions.Any(r => SameRegion(r.Description, key)))
        {
            _regionRepeats[key] = _regionRepeats.GetValueOrDefault(key) + 1;
            return;
        }
        GuardAgainstShrinking(fd, "memory region");
        var mapped = GuestRegion.Map(fd, ToDescription(region));
        try { _memory.AddRegion(mapped); }
        catch { mapped.Dispose(); throw; }
        _log.LogInformation("memory region added: {Region}", mapped);
    }

    private void RemMemReg(VhostUserMessage m)
    {
        var region = m.ParsePayload<SingleMemoryRegion>().Region;
        var key = ToDescription(region);
        if (_regionRepeats.TryGetValue(key, out int repeats))
        {
            if (repeats == 1) _regionRepeats.Remove(key); else _regionRepeats[key] = repeats - 1;
            return; // another vhost device still has it
        }
        if (!_memory.RemoveRegion(key)) throw new VhostUserSessionException($"no region at guest address {region.GuestPhysAddr:x} to remove");
    }

    /// <summary>
    /// Seals a frontend's fd against shrinking before we check its size and map it (see
    /// <see cref="FileDescriptors.SealAgainstShrinking"/>). One that cannot be sealed is refused with
    /// <see cref="BackendOptions.RequireSealedMemory"/>, else accepted with a warning, once per connection.
    /// </summary>
    private void GuardAgainstShrinking(SafeFileHandle fd, string what)
    {
        if (FileDescriptors.SealAgainstShrinking(fd)) return;
        if (_options.RequireSealedMemory)
            throw new VhostUserSessionException($"{what}: its fd cannot be sealed against shrinking (a file, or an unsealable memfd), and sealed memory is required");
        if (_warnedUnsealed) return;
        _warnedUnsealed = true;
        _log.LogWarning("{What}: its fd cannot be sealed against shrinking; a frontend that truncates it can end this process (SIGBUS). Use sealed memfd memory, or --require-sealed-memory to refuse such fds", what);
    }

    private bool _warnedUnsealed;

    private static RegionDescription ToDescription(Protocol.MemoryRegion r) => new(r.GuestPhysAddr, r.Size, r.UserAddr, r.MmapOffset);

    private static bool SameRegion(RegionDescription a, RegionDescription b)
        => a.GuestPhysicalAddress == b.GuestPhysicalAddress && a.Size == b.Size && a.FrontendVirtualAddress == b.FrontendVirtualAddress;

    private void SetLogBase(VhostUserMessage m)
    {
        var description = m.ParsePayload<LogDescription>();
        if (m.Fds.Count != 1) throw new VhostUserSessionException("SET_LOG_BASE needs exactly one fd");
        using var fd = m.Fds.Take(0);
        if (description.MmapSize == 0 || description.MmapOffset + description.MmapSize < description.MmapOffset)
            throw new VhostUserSessionException("dirty log has no size or wraps");
        GuardAgainstShrinking(fd, "dirty log");
        if (description.MmapOffset + description.MmapSize > (ulong)FileDescriptors.SizeOf(fd))
            throw new VhostUserSessionException("dirty log lies past the end of its fd");
        ulong page = (ulong)FileDescriptors.PageSize;
        ulong alignedOffset = description.MmapOffset / page * page;
        var mapping = MemoryMapping.Map(fd, alignedOffset, description.MmapSize + description.MmapOffset - alignedOffset, writable: true);
        var previous = _pendingLog;
        _pendingLog = new DirtyLog(mapping, description.MmapOffset - alignedOffset, description.MmapSize);
        // A log that was never published has no readers; a published one is retired by ApplyLog's grace period.
        if (previous is not null && !ReferenceEquals(previous, _memory.Current.Log)) previous.Dispose();
        ApplyLog();
        if (Has(VhostUserProtocolFeatures.LogShmFd)) _channel!.SendReplyU64(m, 0);
    }

    /// <summary>Publishes the log when LOG_ALL is on and a log base is known; otherwise stops logging.</summary>
    private void ApplyLog()
    {
        var wanted = LoggingWanted ? _pendingLog : null;
        var previous = _memory.Current.Log;
        if (ReferenceEquals(previous, wanted)) return;
        _memory.SetLog(wanted); // unmaps the previously published log after the grace period
        if (previous is not null) _dirtyBitsSet += previous.BitsSet;
        if (wanted is null)
        {
            _pendingLog = null; // logging off: the log went with it; the next SET_LOG_BASE brings a new one
            _log.LogInformation("dirty logging off ({Bits} page bits set so far)", _dirtyBitsSet);
        }
        else
        {
            _log.LogInformation("dirty logging {State} ({Bytes} bytes of log)", previous is null ? "on" : "continues in a new log", wanted.SizeInBytes);
        }
    }

    // ---- device IOTLB (vIOMMU) ----

    private void IotlbMessageReceived(IotlbMessage message)
    {
        if (!IommuPlatform) throw new VhostUserSessionException("IOTLB message without ACCESS_PLATFORM negotiated");
        switch (message.Type)
        {
            case IotlbMessageType.Update:
                _memory.UpdateIotlb(new IotlbEntry(message.Iova, message.Size, message.UserAddr, (IotlbAccess)message.Permission));
                break;
            case IotlbMessageType.Invalidate:
                _memory.InvalidateIotlb(message.Iova, message.Size); // returns once no worker can use the range
                break;
            default:
                throw new VhostUserSessionException($"IOTLB message type {message.Type} is not for a back-end");
        }
    }

    /// <summary>
    /// Sends a worker's IOTLB miss over the back-end request channel (called by workers, outside read
    /// sections). False if there is no channel: the frontend never gave us one (SET_BACKEND_REQ_FD),
    /// or it stopped reading it and the channel was dropped.
    /// </summary>
    private bool ReportIotlbMiss(IotlbMiss miss)
    {
        lock (_backendChannelLock)
        {
            if (_backendChannel is not { } channel) return false;
            try
            {
                // Not waiting for an ack: the frontend answers with an IOTLB update on the main channel,
                // which the worker waits for as a memory change.
                channel.SendIotlbMiss(miss.Iova, miss.Write ? IotlbPermission.WriteOnly : IotlbPermission.ReadOnly, waitForAck: false);
                return true;
            }
            catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
            {
                // A send that timed out may have left half a message: the channel is unusable from here on.
                _log.LogWarning("back-end request channel dropped: an IOTLB miss could not be sent ({Reason})", e.Message);
                channel.Dispose();
                _backendChannel = null;
                return false;
            }
        }
    }

    /// <summary>
    /// How long a send on the back-end request channel may block. A frontend that stops reading it
    /// must not hold a worker (and through it GET_VRING_BASE or a disconnect) for ever.
    /// </summary>
    private const int BackendRequestSendTimeoutMs = 1000;

    private readonly Lock _backendChannelLock = new();

    // ---- rings ----

    private QueueSlot Slot(uint index) => index < _queues.Length ? _queues[index]
        : throw new VhostUserSessionException($"queue index {index} is out of range (device has {_queues.Length})");

    private void SetVringNum(VringState state)
    {
        var slot = Slot(state.Index);
        if (slot.Running) throw new VhostUserSessionException($"queue {state.Index} is running; its size cannot change");
        slot.Queue.SetSize((int)Math.Min(state.Num, int.MaxValue));
        slot.SizeSet = true;
    }

    private void SetVringAddr(VringAddress address)
    {
        var slot = Slot(address.Index);
        if (!slot.SizeSet) throw new VhostUserSessionException($"queue {address.Index} has no size yet; SET_VRING_NUM comes before SET_VRING_ADDR");
        bool log = (address.Flags & VringAddressFlags.Log) != 0;
        slot.Queue.SetRings(new RingAddresses(address.Descriptor, address.Available, address.Used, address.Log, log));
        slot.AddressSet = true;
        // A running worker must stop using pointers to the old rings before we reply.
        if (slot.Running) _memory.Invalidate();
    }

    private void SetVringBase(VringState state)
    {
        var slot = Slot(state.Index);
        if (slot.Running) throw new VhostUserSessionException($"queue {state.Index} is running; its base cannot change");
        slot.Queue.SetBase(state.Num);
    }

    private VringState GetVringBase(VringState state)
    {
        var slot = Slot(state.Index);
        // Stops the ring: the worker has left and will not come back. What the driver made available
        // before this message is finished first where the device asks for it (net transmit): DPDK's
        // virtio_user stops right after its last burst, whose kick our worker may not have seen yet.
        slot.StopWorker(finish: true);
        slot.Started = false;
        slot.Kick?.Dispose(); slot.Kick = null;
        slot.Call?.Dispose(); slot.Call = null;
        uint vringBase = slot.Queue.GetBase();
        if (slot.Queue.IsBroken)
        {
            // A stopped ring is set up afresh before it runs again (a guest reset does exactly this): a
            // queue the guest broke must not stay dead once the frontend restarts it.
            slot.Queue.Reset();
            slot.Queue.SetBase(vringBase);
        }
        return new VringState(state.Index, vringBase);
    }

    private void SetVringFd(VhostUserMessage m, FrontEndRequest request)
    {
        var vring = VringFd.FromU64(m.ReadU64());
        var slot = Slot(vring.Index);
        if (m.Fds.Count != vring.ExpectedFdCount) throw new VhostUserSessionException($"{request} for queue {vring.Index} carries {m.Fds.Count} fds, expected {vring.ExpectedFdCount}");
        // A kick starts the ring: everything it runs on must be known first (QEMU and DPDK send it last).
        if (request == FrontEndRequest.SetVringKick)
        {
            string? missing = !_featuresSet ? "SET_FEATURES" : _memory.Current.Regions.Count == 0 ? "a memory table"
                : !slot.SizeSet ? "SET_VRING_NUM" : !slot.AddressSet ? "SET_VRING_ADDR" : null;
            if (missing is not null) throw new VhostUserSessionException($"SET_VRING_KICK for queue {vring.Index} before {missing}");
        }
        EventFd? fd = vring.NoFd ? null : EventFd.Adopt(m.Fds.TakeRaw(0));
        switch (request)
        {
            case FrontEndRequest.SetVringKick:
                slot.StopWorker();
                slot.Kick?.Dispose();
                slot.Kick = fd;
                slot.Polling = fd is null;
                slot.Started = true;
                UpdateRunning(slot);
                break;
            case FrontEndRequest.SetVringCall:
                var oldCall = slot.Call;
                slot.Call = fd;
                if (slot.Worker is { } w)
                {
                    w.ExchangeCall(fd);
                    _memory.Invalidate(); // the worker signals only inside a read section: after this it cannot be using oldCall
                }
                oldCall?.Dispose();
                break;
            default:
                // The worker lets go of the old fd inside ExchangeErr, so it can be closed now: a frontend
                // that repeats SET_VRING_ERR must not pile up descriptors in the backend.
                var oldErr = slot.Err;
                slot.Err = fd;
                slot.Worker?.ExchangeErr(fd);
                oldErr?.Dispose();
                break;
        }
    }

    private void SetVringEnable(VringState state)
    {
        var slot = Slot(state.Index);
        if (state.Num > 1) throw new VhostUserSessionException($"SET_VRING_ENABLE value {state.Num} is neither 0 nor 1");
        slot.Enabled = state.Num == 1;
        UpdateRunning(slot);
    }

    /// <summary>Starts or stops the worker to match the vhost-user rules: started, enabled (implicitly without protocol features), and set up.</summary>
    private void UpdateRunning(QueueSlot slot)
    {
        bool enabled = slot.Enabled || !ProtocolFeaturesNegotiated;
        bool shouldRun = slot.Started && enabled && slot.SizeSet && slot.AddressSet && _featuresSet;
        if (shouldRun == slot.Running) return;
        if (!shouldRun)
        {
            // Disabled (SET_VRING_ENABLE 0): a transmit queue still owes the frames sent before it.
            slot.StopWorker(finish: true);
            return;
        }
        AttachInflight(slot);
        var worker = new QueueWorker(slot.Queue, _memory, _device.CreateProcessor(slot.Index, slot.Queue.Size), slot.Polling ? null : slot.Kick,
            slot.Call, slot.Err, _options.BusyPoll, _options.PollMax, _log, ReportIotlbMiss);
        slot.Worker = worker;
        worker.Start();
        _log.LogInformation("queue {Queue} running ({Layout}, size {Size}, {Access})", slot.Index, slot.Queue.Layout, slot.Queue.Size, slot.Queue.Access);
    }

    // ---- inflight tracking (reconnect without losing requests) ----

    private void GetInflightFd(VhostUserMessage m)
    {
        var request = m.ParsePayload<InflightDescription>();
        CheckInflightShape(request.NumQueues, request.QueueSize);
        var layout = Layout;
        ulong size = request.NumQueues * layout.InflightRegionSize(request.QueueSize);
        using var fd = FileDescriptors.CreateMemfd("sharpvhost-inflight", (long)size);
        FileDescriptors.SealAgainstShrinking(fd); // the frontend gets this fd: it must not be able to cut our mapping short
        ReplaceInflight(new InflightArea(MemoryMapping.Map(fd, 0, size, writable: true), layout, request.NumQueues, request.QueueSize));
        Span<int> fds = [(int)fd.DangerousGetHandle()];
        _channel!.SendReply(m, new InflightDescription(size, 0, request.NumQueues, request.QueueSize), fds);
    }

    private void SetInflightFd(VhostUserMessage m)
    {
        var description = m.ParsePayload<InflightDescription>();
        CheckInflightShape(description.NumQueues, description.QueueSize);
        using var fd = m.Fds.Take(0);
        GuardAgainstShrinking(fd, "inflight area");
        var layout = Layout;
        ulong needed = description.NumQueues * layout.InflightRegionSize(description.QueueSize);
        if (description.MmapSize < needed || description.MmapOffset + description.MmapSize < description.MmapOffset
            || description.MmapOffset + description.MmapSize > (ulong)FileDescriptors.SizeOf(fd)
            || description.MmapOffset % (ulong)FileDescriptors.PageSize != 0)
            throw new VhostUserSessionException("inflight area is too small, unaligned or lies past the end of its fd");
        ReplaceInflight(new InflightArea(MemoryMapping.Map(fd, description.MmapOffset, description.MmapSize, writable: true), layout, description.NumQueues, description.QueueSize));
    }

    private void CheckInflightShape(ushort numQueues, ushort queueSize)
    {
        if (numQueues == 0 || numQueues > _queues.Length) throw new VhostUserSessionException($"inflight area for {numQueues} queues; the device has {_queues.Length}");
        if (!Layout.IsValidQueueSize(queueSize)) throw new VhostUserSessionException($"inflight queue size {queueSize} is not valid");
    }

    private void ReplaceInflight(InflightArea area)
    {
        // Workers write the area without a read section; it can only change while no queue runs.
        if (_queues.Any(q => q.Running))
        {
            area.Mapping.Dispose();
            throw new VhostUserSessionException("the inflight area cannot change while queues run");
        }
        _inflight?.Mapping.Dispose();
        _inflight = area;
    }

    /// <summary>
    /// Gives a starting queue its share of the inflight area, if the frontend set one up for this queue's
    /// layout and size. The area records the layout it was sized for (the negotiated one when it was
    /// made); a queue of the other layout runs without one rather than lay a tracker past its end.
    /// </summary>
    private void AttachInflight(QueueSlot slot)
    {
        var queue = slot.Queue;
        nint region = 0;
        if (_inflight is { } area && slot.Index < area.NumQueues)
        {
            ulong share = area.Layout.InflightRegionSize(area.QueueSize);
            if (area.Layout == queue.Layout && queue.Size == area.QueueSize && (ulong)(slot.Index + 1) * share <= area.Mapping.Length)
                region = area.Mapping.Address + (nint)((ulong)slot.Index * share);
            else
                _log.LogWarning("queue {Queue}: the inflight area was made for {AreaLayout} rings of {AreaSize}, the queue is {Layout} of {Size}: no crash recovery for it",
                    slot.Index, area.Layout, area.QueueSize, queue.Layout, queue.Size);
        }
        queue.UseInflight(region);
    }

    /// <summary>The layout the negotiated features ask for (split until SET_FEATURES says otherwise).</summary>
    private RingLayout Layout => RingLayouts.FromFeatures(_features);

    private sealed record InflightArea(MemoryMapping Mapping, RingLayout Layout, ushort NumQueues, ushort QueueSize);

    // ---- config, status, reset ----

    private ConfigSpace GetConfig(ConfigSpace request)
    {
        const int MaxConfig = 256;
        if (request.Offset > MaxConfig || request.Data.Length > MaxConfig - request.Offset)
            throw new VhostUserSessionException($"config read [{request.Offset}, +{request.Data.Length}) is out of range");
        var config = _device.Config;
        var data = new byte[request.Data.Length];
        if (request.Offset < config.Length)
        {
            var available = config[(int)request.Offset..];
            available[..Math.Min(available.Length, data.Length)].CopyTo(data);
        }
        return new ConfigSpace(request.Offset, request.Flags, data);
    }

    private void SetConfig(ConfigSpace request)
    {
        if (!_device.WriteConfig(request.Offset, request.Data))
            throw new VhostUserSessionException($"config write at {request.Offset} (+{request.Data.Length}) refused");
    }

    private void SetStatus(ulong status)
    {
        if (status > byte.MaxValue) throw new VhostUserSessionException($"device status {status} does not fit a byte");
        _status = (byte)status;
        if (status == 0) StopRingsKeepingPositions();
    }

    /// <summary>
    /// SET_STATUS(0): the device stops, but each ring keeps its position. QEMU 7.2 sends it on every
    /// device stop *before* GET_VRING_BASE (later QEMUs send it after), and live migration carries the
    /// base GET_VRING_BASE then returns: a reset here would hand the destination base 0.
    /// </summary>
    private void StopRingsKeepingPositions()
    {
        foreach (var q in _queues)
        {
            q.StopWorker(finish: true); // a stop like GET_VRING_BASE's: transmit queues finish what was sent
            q.Started = false;
        }
    }

    private void SetBackendReqFd(VhostUserMessage m)
    {
        if (m.Fds.Count != 1) throw new VhostUserSessionException("SET_BACKEND_REQ_FD needs exactly one fd");
        var socket = m.Fds.TakeSocket(0);
        try
        {
            // .NET wraps any fd without complaint; the first send would fail much later, on a worker.
            if (socket.AddressFamily != AddressFamily.Unix || socket.SocketType != SocketType.Stream)
                throw new VhostUserSessionException("SET_BACKEND_REQ_FD's fd is not a Unix stream socket");
        }
        catch (Exception e)
        {
            socket.Dispose();
            if (e is VhostUserSessionException) throw;
            throw new VhostUserSessionException($"SET_BACKEND_REQ_FD's fd is not a Unix stream socket ({e.Message})");
        }
        socket.SendTimeout = BackendRequestSendTimeoutMs;
        lock (_backendChannelLock)
        {
            _backendChannel?.Dispose();
            _backendChannel = new BackEndRequestChannel(socket, Has(VhostUserProtocolFeatures.ReplyAck), _log);
        }
    }

    /// <summary>Stops every queue and forgets ring state; memory stays (RESET_DEVICE keeps the table).</summary>
    private void ResetDevice()
    {
        foreach (var q in _queues)
        {
            q.Dispose();
            q.Queue.Reset();
            q.Started = q.Enabled = q.SizeSet = q.AddressSet = q.Polling = false;
        }
    }

    private void StopEverything()
    {
        ResetDevice();
        _inflight?.Mapping.Dispose(); // the frontend keeps its own mapping for the next connection
        _inflight = null;
        lock (_backendChannelLock)
        {
            _backendChannel?.Dispose();
            _backendChannel = null;
        }
        if (_pendingLog is not null && !ReferenceEquals(_pendingLog, _memory.Current.Log)) _pendingLog.Dispose();
        _pendingLog = null;
        if (_memory.Current.Log is { } log) _dirtyBitsSet += log.BitsSet;
        if (_dirtyBitsSet > 0) _log.LogInformation("dirty log: {Bits} page bits set while logging", _dirtyBitsSet);
        if (_memory.IotlbInvalidations > 0) _log.LogInformation("IOTLB: {Invalidations} invalidations so far", _memory.IotlbInvalidations);
        _dirtyBitsSet = 0;
        _memory.Clear();
        _regionRepeats.Clear();
        _features = _protocolFeatures = 0;
        _featuresSet = false;
        _status = 0;
    }

    private void LogSummary()
    {
        foreach (var q in _queues)
        {
            var c = q.Queue.Counters;
            if (c.Requests == 0 && c.Errors == 0) continue;
            _log.LogInformation("queue {Queue}: {Requests} requests, {Read} bytes read, {Written} bytes written, {Errors} errors, {Kicks} kicks, {Interrupts} interrupts, {Direct} direct / {Checked} checked binds, {Fallbacks} fallbacks, {Revalidations} re-validations, {Misses} IOTLB misses",
                q.Index, c.Requests, c.ReadableBytes, c.WritableBytes, c.Errors, c.Kicks, c.Interrupts, c.DirectBinds, c.CheckedBinds, c.DirectFallbacks, c.Revalidations, c.IotlbMisses);
        }
    }

    public void Dispose()
    {
        StopEverything();
        _metrics.Dispose();
    }
}
