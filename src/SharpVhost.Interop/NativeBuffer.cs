using System.Runtime.InteropServices;

namespace SharpVhost.Interop;

/// <summary>
/// Native memory that never moves (request headers and iovec arrays handed to the kernel while another
/// thread may be collecting garbage). Owned; freed on dispose.
/// </summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    private void* _memory;

    public int Length { get; }
    public nint Address => (nint)_memory;
    public Span<byte> Span => new(_memory, Length);

    public NativeBuffer(int length)
    {
        Length = length;
        _memory = NativeMemory.AllocZeroed((nuint)Math.Max(1, length));
    }

    public static NativeBuffer ForIoSlices(int count) => new(count * sizeof(IoSlice));

    /// <summary>The iovec array laid over this buffer.</summary>
    public Span<IoSlice> AsIoVecs() => new(_memory, Length / sizeof(IoSlice));

    /// <summary>
    /// The address of memory that does not move (guest memory, a native buffer, a pinned array). Never
    /// use it for a span over an ordinary managed array: the collector may move that.
    /// </summary>
    public static nint AddressOf(ReadOnlySpan<byte> unmovable)
    {
        fixed (byte* p = unmovable) return (nint)p;
    }

    /// <summary>Zeroes memory the caller owns (a hole in a read lands in guest memory as zeroes).</summary>
    public static void Clear(nint address, nuint length) => NativeMemory.Clear((void*)address, length);

    public void Dispose()
    {
        if (_memory is null) return;
        NativeMemory.Free(_memory);
        _memory = null;
    }
}
