using Microsoft.Extensions.Logging;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;

namespace SharpVhost.VhostUser.Frontend;

/// <summary>
/// The frontend's side of a virtual IOMMU (ACCESS_PLATFORM), as QEMU plays it: the I/O page table
/// the "guest" edits with <see cref="Map"/> and <see cref="Unmap"/>, answers to the backend's IOTLB
/// misses (an IOTLB update on the main channel, for the mapping that covers the address), and an
/// IOTLB invalidation for every unmap, acknowledged before <see cref="Unmap"/> returns. Misses are
/// served by a thread of its own reading the back-end request channel.
/// </summary>
public sealed class FrontendIommu : IDisposable
{
    private readonly FrontEndConnection _connection;
    private readonly VhostUserChannel _requests;
    private readonly ILogger? _log;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<ulong, (ulong Size, ulong UserAddress, IotlbPermission Permission)> _table = [];
    private readonly HashSet<ulong> _waiting = []; // misses nothing mapped yet: answered when a Map covers them
    private readonly Thread _thread;
    private long _misses, _unanswered, _invalidations;

    /// <summary>Creates the back-end request channel, hands one end to the backend (SET_BACKEND_REQ_FD) and serves the other.</summary>
    internal FrontendIommu(FrontEndConnection connection, ILogger? logger)
    {
        _connection = connection;
        _log = logger;
        var (ours, theirs) = UnixSockets.CreatePair();
        using (theirs)
        {
            Span<int> fds = [(int)theirs.Handle];
            connection.Send(FrontEndRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, fds);
        }
        _requests = new VhostUserChannel(ours, VhostUserRole.FrontEnd, VhostUserChannelKind.BackendRequests, logger);
        _thread = new Thread(ServeRequests) { IsBackground = true, Name = "iotlb-misses" };
        _thread.Start();
    }

    /// <summary>IOTLB misses the backend reported.</summary>
    public long Misses => Interlocked.Read(ref _misses);
    /// <summary>Misses for addresses nothing mapped when they came (answered by the <see cref="Map"/> that covers them, if any).</summary>
    public long Unanswered => Interlocked.Read(ref _unanswered);
    /// <summary>Invalidations the backend acknowledged.</summary>
    public long Invalidations => Interlocked.Read(ref _invalidations);

    /// <summary>
    /// Maps [iova, iova+size) to the frontend-virtual [userAddress, +size) in the I/O page table. The
    /// backend learns of it on a miss, or now if it already missed there.
    /// </summary>
    public void Map(ulong iova, ulong size, ulong userAddress, IotlbPermission permission)
    {
        bool missed;
        lock (_lock)
        {
            RemoveLocked(iova, size);
            _table[iova] = (size, userAddress, permission);
            missed = _waiting.RemoveWhere(a => a - iova < size) > 0;
        }
        if (missed) SendIotlb(new IotlbMessage(iova, size, userAddress, permission, IotlbMessageType.Update));
    }

    /// <summary>
    /// Unmaps [iova, iova+size) and invalidates the backend's IOTLB for it. When this returns the
    /// backend has acknowledged (with REPLY_ACK): it will not touch that range through the old mapping again.
    /// </summary>
    public void Unmap(ulong iova, ulong size)
    {
        lock (_lock) RemoveLocked(iova, size);
        SendIotlb(new IotlbMessage(iova, size, 0, IotlbPermission.None, IotlbMessageType.Invalidate));
        Interlocked.Increment(ref _invalidations);
    }

    private void RemoveLocked(ulong iova, ulong size)
    {
        // Mappings are replaced whole: a test maps and unmaps the same pieces it mapped.
        foreach (var start in _table.Keys.Where(k => k < iova + size && iova < k + _table[k].Size).ToArray()) _table.Remove(start);
    }

    private void SendIotlb(in IotlbMessage message) => _connection.Send(FrontEndRequest.IotlbMsg, message);

    private void ServeRequests()
    {
        try
        {
            while (_requests.Receive() is { } message)
            {
                using (message)
                {
                    bool ok = true;
                    if (message.Header.Request == (uint)BackEndRequest.IotlbMsg)
                    {
                        var miss = message.ParsePayload<IotlbMessage>();
                        ok = miss.Type == IotlbMessageType.Miss && Answer(miss.Iova);
                    }
                    if (message.Header.NeedReply) _requests.Acknowledge(message.Header, ok);
                }
            }
        }
        catch (Exception e) when (e is VhostUserProtocolException or System.Net.Sockets.SocketException or ObjectDisposedException
            or VhostUserRequestFailedException or IOException)
        {
            _log?.LogDebug("IOMMU request channel ended: {Reason}", e.Message);
        }
    }

    /// <summary>Sends the mapping that covers <paramref name="iova"/>, as QEMU answers a miss with the IOMMU's translation.</summary>
    private bool Answer(ulong iova)
    {
        Interlocked.Increment(ref _misses);
        (ulong Start, ulong Size, ulong UserAddress, IotlbPermission Permission)? found = null;
        lock (_lock)
        {
            foreach (var (start, m) in _table)
            {
                if (start > iova) break;
                if (iova - start < m.Size) { found = (start, m.Size, m.UserAddress, m.Permission); break; }
            }
            if (found is null) _waiting.Add(iova);
        }
        if (found is not { } f)
        {
            Interlocked.Increment(ref _unanswered);
            return false;
        }
        SendIotlb(new IotlbMessage(f.Start, f.Size, f.UserAddress, f.Permission, IotlbMessageType.Update));
        return true;
    }

    public void Dispose()
    {
        _requests.Shutdown();
        if (Thread.CurrentThread != _thread) _thread.Join();
        _requests.Dispose();
    }
}
