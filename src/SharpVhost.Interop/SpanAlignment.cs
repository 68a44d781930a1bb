namespace SharpVhost.Interop;

/// <summary>Address checks on spans, for O_DIRECT's alignment rules.</summary>
public static class SpanAlignment
{
    public static unsafe bool IsAligned(ReadOnlySpan<byte> span, int alignment)
    {
        fixed (byte* p = span) return (nint)p % alignment == 0 && span.Length % alignment == 0;
    }
}
