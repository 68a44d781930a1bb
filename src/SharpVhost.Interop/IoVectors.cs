using System.Runtime.InteropServices;

namespace SharpVhost.Interop;

/// <summary>
/// A block of native <c>struct iovec</c>s, allocated once and reused: the kernel reads them while a
/// vectored operation is in flight, so they must not move (no managed array) and must outlive it.
/// </summary>
public sealed unsafe class IoVectors : IDisposable
{
    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec { public nint Base; public nuint Len; }

    private IoVec* _vectors;

    public int Capacity { get; }

    public IoVectors(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
        _vectors = (IoVec*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(IoVec));
    }

    /// <summary>The address of iovec <paramref name="index"/>, to hand to the kernel.</summary>
    public nint AddressOf(int index) => (nint)(_vectors + Checked(index));

    public void Set(int index, nint address, int length)
    {
        var v = _vectors + Checked(index);
        v->Base = address;
        v->Len = (nuint)length;
    }

    public nint BaseOf(int index) => _vectors[Checked(index)].Base;
    public int LengthOf(int index) => (int)_vectors[Checked(index)].Len;

    /// <summary>
    /// Drops <paramref name="bytes"/> from the front of the <paramref name="count"/> iovecs starting at
    /// <paramref name="first"/> (what a short read or write moved); returns the new first index.
    /// </summary>
    public int Advance(int first, int count, long bytes)
    {
        int end = first + count;
        while (bytes > 0 && first < end)
        {
            var v = _vectors + Checked(first);
            if ((ulong)bytes >= v->Len) { bytes -= (long)v->Len; v->Len = 0; first++; continue; }
            v->Base += (nint)bytes;
            v->Len -= (nuint)bytes;
            bytes = 0;
        }
        return first;
    }

    private int Checked(int index) => (uint)index < (uint)Capacity ? index : throw new ArgumentOutOfRangeException(nameof(index));

    public void Dispose()
    {
        var v = _vectors;
        _vectors = null;
        if (v is not null) NativeMemory.Free(v);
    }
}
