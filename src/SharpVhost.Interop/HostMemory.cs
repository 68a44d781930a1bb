namespace SharpVhost.Interop;

/// <summary>
/// Spans over memory named by an address (a segment of our mapping of guest memory). The caller
/// guarantees the memory stays mapped while the span is used.
/// </summary>
public static class HostMemory
{
    public static unsafe Span<byte> AsSpan(nint address, int length) => new((void*)address, length);
}
