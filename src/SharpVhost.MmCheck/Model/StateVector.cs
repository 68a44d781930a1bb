using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SharpVhost.MmCheck.Model;

/// <summary>Eight machine words holding every byte-sized field of the modelled kernel.</summary>
[InlineArray(8)]
public struct StateWords
{
    private ulong _word;
}

/// <summary>
/// The whole model state as a fixed 64-byte value: cheap to copy, hash and compare, which is what
/// an explorer visiting millions of states needs. Field meanings live in <see cref="Layout"/>.
/// </summary>
public struct StateVector : IEquatable<StateVector>
{
    public const int Size = 64;
    public StateWords Words;

    public byte this[int field]
    {
        readonly get
        {
            if ((uint)field >= Size) throw new IndexOutOfRangeException();
            return Unsafe.Add(ref Unsafe.As<StateWords, byte>(ref Unsafe.AsRef(in Words)), field);
        }
        set
        {
            if ((uint)field >= Size) throw new IndexOutOfRangeException();
            Unsafe.Add(ref Unsafe.As<StateWords, byte>(ref Words), field) = value;
        }
    }

    public readonly bool Equals(StateVector other)
    {
        ReadOnlySpan<ulong> a = Words, b = other.Words;
        return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
            && a[4] == b[4] && a[5] == b[5] && a[6] == b[6] && a[7] == b[7];
    }

    public override readonly bool Equals(object? obj) => obj is StateVector v && Equals(v);

    public override readonly int GetHashCode() => (int)Hash64();

    /// <summary>A 64-bit mix of the eight words (xxhash-style multiply-rotate).</summary>
    public readonly ulong Hash64()
    {
        ReadOnlySpan<ulong> w = Words;
        ulong h = 0x9E3779B97F4A7C15UL;
        for (int i = 0; i < 8; i++)
        {
            h ^= w[i] * 0xC2B2AE3D27D4EB4FUL;
            h = ((h << 31) | (h >> 33)) * 0x9E3779B97F4A7C15UL;
        }
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9UL;
        return h ^ (h >> 32);
    }
}
