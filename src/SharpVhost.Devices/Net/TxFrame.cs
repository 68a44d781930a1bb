using SharpVhost.Virtio;

namespace SharpVhost.Devices.Net;

/// <summary>
/// A frame on its way out of a guest, handed to an endpoint without copying: either the readable part
/// of a descriptor chain (after the virtio-net header) or, for frames the device makes itself
/// (RARP announcements, tests), a plain span. Valid only during the call it is passed to.
/// </summary>
public readonly ref struct TxFrame
{
    private readonly DescriptorChain? _chain;
    private readonly int _offset;
    private readonly ReadOnlySpan<byte> _bytes;

    public VirtioNetHeader Header { get; }
    /// <summary>Frame bytes (Ethernet header onwards), without the virtio-net header.</summary>
    public int Length { get; }
    /// <summary>The chain the frame lies in (null for span frames); its readable bytes are the header then the frame.</summary>
    public DescriptorChain? Chain => _chain;
    /// <summary>Where the frame starts in the chain's readable bytes: the virtio-net header's size.</summary>
    public int HeaderSize => _offset;

    public TxFrame(DescriptorChain chain, int headerSize, int length, VirtioNetHeader header)
    {
        _chain = chain;
        _offset = headerSize;
        _bytes = default;
        Length = length;
        Header = header;
    }

    public TxFrame(ReadOnlySpan<byte> frame, VirtioNetHeader header = default)
    {
        _chain = null;
        _offset = 0;
        _bytes = frame;
        Length = frame.Length;
        Header = header;
    }

    /// <summary>Copies the frame (or its first <c>destination.Length</c> bytes) into <paramref name="destination"/>; returns bytes copied.</summary>
    public int CopyTo(Span<byte> destination)
    {
        if (_chain is null)
        {
            int n = Math.Min(destination.Length, _bytes.Length);
            _bytes[..n].CopyTo(destination);
            return n;
        }
        return _chain.CopyFromReadable(_offset, destination[..Math.Min(destination.Length, Length)]);
    }

    /// <summary>The destination and source MAC addresses (the first 12 bytes; frames are at least 14).</summary>
    public (MacAddress Destination, MacAddress Source) ReadAddresses()
    {
        Span<byte> b = stackalloc byte[12];
        CopyTo(b);
        return (MacAddress.Read(b), MacAddress.Read(b[6..]));
    }
}
