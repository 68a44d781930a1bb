using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Net;

/// <summary>
/// A transmit queue: pops the frames the guest sends, checks the virtio-net header and the length,
/// and hands each frame to the endpoint where it lies in guest memory (the endpoint copies only if it
/// must). Bad frames are dropped and counted; the chain is always returned, so the queue keeps going.
/// </summary>
internal sealed class TxQueueProcessor(NetPort port, NetEndpoint endpoint, int pair) : IQueueProcessor
{
    private readonly DescriptorChain _chain = new();
    private long _batchFrames, _batchBytes, _batchOffloaded; // added to the shared counters once per batch, not per frame

    /// <summary>Frames the guest made available before the ring was stopped or disabled were sent: deliver them.</summary>
    public bool FinishOnStop => true;

    public int Process(IDeviceQueue queue, GuestMemory memory, int budget)
    {
        int handled = 0;
        while (handled < budget && queue.TryPop(_chain))
        {
            handled++;
            Handle(_chain);
            queue.AddUsed(_chain, 0);
        }
        if (_batchFrames != 0)
        {
            Interlocked.Add(ref port.Counters.TxFrames, _batchFrames);
            Interlocked.Add(ref port.Counters.TxBytes, _batchBytes);
            if (_batchOffloaded != 0) Interlocked.Add(ref port.Counters.TxOffloaded, _batchOffloaded);
            _batchFrames = _batchBytes = _batchOffloaded = 0;
        }
        return handled;
    }

    private void Handle(DescriptorChain chain)
    {
        var counters = port.Counters;
        int headerSize = port.HeaderSize;
        Span<byte> headerBytes = stackalloc byte[VirtioNet.HeaderSize];
        if (chain.ReadableBytes < headerSize || chain.CopyFromReadable(0, headerBytes[..headerSize]) < headerSize)
        {
            Interlocked.Increment(ref counters.TxBadHeader);
            return;
        }
        var header = VirtioNetHeader.Read(headerBytes, headerSize);
        int length = (int)Math.Min(chain.ReadableBytes - (uint)headerSize, int.MaxValue);
        if (length < VirtioNet.EthernetHeaderSize)
        {
            Interlocked.Increment(ref counters.TxTooShort);
            return;
        }
        if (!IsAcceptable(header, length))
        {
            Interlocked.Increment(ref counters.TxBadHeader);
            return;
        }
        if (length > (header.IsGso ? VirtioNet.MaxGsoFrameLength : port.MaxFrameLength))
        {
            Interlocked.Increment(ref counters.TxTooLong);
            return;
        }
        _batchFrames++;
        _batchBytes += length;
        if (header.NeedsCsum || header.IsGso) _batchOffloaded++;
        if (!endpoint.Transmit(pair, new TxFrame(chain, headerSize, length, header)))
            Interlocked.Increment(ref counters.TxEndpointDrops);
    }

    /// <summary>Only offloads the guest negotiated, and checksum positions inside the frame.</summary>
    private bool IsAcceptable(in VirtioNetHeader header, int length)
    {
        if ((header.Flags & ~(VirtioNet.HeaderNeedsCsum | VirtioNet.HeaderDataValid)) != 0) return false;
        if (header.NeedsCsum)
        {
            if (!port.Has(VirtioNet.FeatureCsum)) return false;
            if (header.CsumStart + header.CsumOffset + 2 > length) return false;
        }
        if ((header.GsoType & VirtioNet.GsoEcn) != 0 && !port.Has(VirtioNet.FeatureHostEcn)) return false;
        int needed = (header.GsoType & ~VirtioNet.GsoEcn) switch
        {
            VirtioNet.GsoNone => -1,
            VirtioNet.GsoTcpV4 => VirtioNet.FeatureHostTso4,
            VirtioNet.GsoTcpV6 => VirtioNet.FeatureHostTso6,
            VirtioNet.GsoUdp => VirtioNet.FeatureHostUfo,
            _ => -2,
        };
        if (needed == -2) return false;
        if (needed >= 0 && (!port.Has(needed) || header.GsoSize == 0 || !header.NeedsCsum)) return false;
        return true;
    }
}
