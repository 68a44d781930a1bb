using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.Fuzz;

/// <summary>
/// Valid vhost-user traffic to seed the corpora: the messages a front-end sends, in the order our
/// own <c>FrontendSession</c> (and QEMU) send them when a block device starts.
/// </summary>
public static class SeedMessages
{
    /// <summary>Guest memory as the seeds describe it: one region, mapped from the fd at offset 0.</summary>
    public const ulong GuestBase = 0, FrontendBase = 0x7f00_0000_0000, RegionSize = 1 << 20;

    /// <summary>Where the seeds put queue 0's rings (guest-physical offsets inside the region).</summary>
    public const ulong DescOffset = 0x1000, AvailOffset = 0x2000, UsedOffset = 0x3000;
    public const int QueueSize = 64;

    /// <summary>One front-end request: a short name, the id, the payload, how many fds go with it.</summary>
    public readonly record struct Request(string Name, FrontEndRequest Id, byte[] Payload, int Fds, VhostUserHeaderFlags Flags = VhostUserHeaderFlags.None);

    public static byte[] Bytes<T>(in T payload) where T : struct, IVhostUserPayload<T>
    {
        var b = new byte[payload.WireSize];
        payload.Write(b);
        return b;
    }

    public static byte[] Encode(uint request, VhostUserHeaderFlags flags, ReadOnlySpan<byte> payload)
    {
        var b = new byte[VhostUserHeader.WireSize + payload.Length];
        VhostUserCodec.Encode(b, request, flags, payload);
        return b;
    }

    private static Request U64(string name, FrontEndRequest id, ulong value, VhostUserHeaderFlags flags = VhostUserHeaderFlags.None)
        => new(name, id, Bytes(new U64Payload(value)), 0, flags);

    private static Request State(string name, FrontEndRequest id, uint index, uint num, VhostUserHeaderFlags flags = VhostUserHeaderFlags.None)
        => new(name, id, Bytes(new VringState(index, num)), 0, flags);

    public static Request MemTable() =>
        new("set-mem-table", FrontEndRequest.SetMemTable,
            Bytes(new MemoryTable([new MemoryRegion(GuestBase, RegionSize, FrontendBase, 0)])), 1, VhostUserHeaderFlags.NeedReply);

    /// <summary>The opening of a block device session, as a front-end drives it (QEMU's order).</summary>
    public static IEnumerable<Request> Opening(ulong features = 0x1_3000_0000 | (1ul << 9), int queues = 1, uint vringBase = 0)
    {
        const ulong protocolFeatures = (ulong)(VhostUserProtocolFeatures.MultiQueue | VhostUserProtocolFeatures.ReplyAck
            | VhostUserProtocolFeatures.Config | VhostUserProtocolFeatures.ConfigureMemSlots);
        yield return new("get-features", FrontEndRequest.GetFeatures, [], 0);
        yield return new("get-protocol-features", FrontEndRequest.GetProtocolFeatures, [], 0);
        yield return U64("set-protocol-features", FrontEndRequest.SetProtocolFeatures, protocolFeatures);
        yield return new("get-queue-num", FrontEndRequest.GetQueueNum, [], 0);
        yield return new("get-max-mem-slots", FrontEndRequest.GetMaxMemSlots, [], 0);
        yield return new("set-owner", FrontEndRequest.SetOwner, [], 0);
        yield return new("get-config", FrontEndRequest.GetConfig, Bytes(new ConfigSpace(0, ConfigSpaceFlags.Writable, new byte[60])), 0);
        yield return U64("set-features", FrontEndRequest.SetFeatures, features, VhostUserHeaderFlags.NeedReply);
        yield return MemTable();
        for (uint q = 0; q < queues; q++)
        {
            ulong ringBase = FrontendBase + q * 0x4000;
            yield return State("set-vring-num", FrontEndRequest.SetVringNum, q, QueueSize, VhostUserHeaderFlags.NeedReply);
            yield return State("set-vring-base", FrontEndRequest.SetVringBase, q, vringBase, VhostUserHeaderFlags.NeedReply);
            yield return new("set-vring-addr", FrontEndRequest.SetVringAddr,
                Bytes(new VringAddress(q, VringAddressFlags.None, ringBase + DescOffset, ringBase + UsedOffset, ringBase + AvailOffset, 0)), 0,
                VhostUserHeaderFlags.NeedReply);
            yield return new("set-vring-call", FrontEndRequest.SetVringCall, Bytes(new VringFd((byte)q, false)), 1, VhostUserHeaderFlags.NeedReply);
            yield return new("set-vring-kick", FrontEndRequest.SetVringKick, Bytes(new VringFd((byte)q, false)), 1, VhostUserHeaderFlags.NeedReply);
            yield return State("set-vring-enable", FrontEndRequest.SetVringEnable, q, 1, VhostUserHeaderFlags.NeedReply);
        }
    }

    /// <summary>What a front-end sends to stop and take down a running queue 0 and the device.</summary>
    public static IEnumerable<Request> Closing()
    {
        yield return State("disable-vring", FrontEndRequest.SetVringEnable, 0, 0);
        yield return State("get-vring-base", FrontEndRequest.GetVringBase, 0, 0);
        yield return U64("set-status", FrontEndRequest.SetStatus, 0);
        yield return new("reset-device", FrontEndRequest.ResetDevice, [], 0);
    }

    /// <summary>One of every request the backend session handles, each valid on its own.</summary>
    public static IEnumerable<Request> FrontEndRequests()
    {
        foreach (var r in Opening()) yield return r;
        foreach (var r in Closing()) yield return r;
        yield return new("add-mem-reg", FrontEndRequest.AddMemReg,
            Bytes(new SingleMemoryRegion(new MemoryRegion(0x100000, 0x10000, FrontendBase + 0x100000, 0))), 1, VhostUserHeaderFlags.NeedReply);
        yield return new("rem-mem-reg", FrontEndRequest.RemMemReg,
            Bytes(new SingleMemoryRegion(new MemoryRegion(GuestBase, RegionSize, FrontendBase, 0))), 0, VhostUserHeaderFlags.NeedReply);
        yield return new("set-log-base", FrontEndRequest.SetLogBase, Bytes(new LogDescription(4096, 0)), 1);
        yield return new("set-log-fd", FrontEndRequest.SetLogFd, [], 1);
        yield return new("set-backend-req-fd", FrontEndRequest.SetBackendReqFd, [], 1, VhostUserHeaderFlags.NeedReply);
        yield return new("set-vring-err", FrontEndRequest.SetVringErr, Bytes(new VringFd(0, false)), 1);
        yield return new("set-vring-kick-nofd", FrontEndRequest.SetVringKick, Bytes(new VringFd(0, true)), 0);
        yield return new("set-config", FrontEndRequest.SetConfig, Bytes(new ConfigSpace(32, ConfigSpaceFlags.Writable, [1])), 0, VhostUserHeaderFlags.NeedReply);
        yield return new("iotlb-update", FrontEndRequest.IotlbMsg, Bytes(new IotlbMessage(0x1000, 0x1000, FrontendBase, IotlbPermission.ReadWrite, IotlbMessageType.Update)), 0);
        yield return new("get-inflight-fd", FrontEndRequest.GetInflightFd, Bytes(new InflightDescription(0, 0, 1, 64)), 0);
        yield return new("get-status", FrontEndRequest.GetStatus, [], 0);
        yield return new("reset-owner", FrontEndRequest.ResetOwner, [], 0);
    }

    /// <summary>The opening as one byte stream (no fds: for the codec, which only counts them).</summary>
    public static byte[] OpeningStream() =>
        Opening().Where(r => r.Fds == 0).SelectMany(r => Encode((uint)r.Id, r.Flags, r.Payload)).ToArray();
}
