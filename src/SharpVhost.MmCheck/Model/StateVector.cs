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
        readonly get => MemoryMarshal.AsBytes((ReadOnlySpan<ulong>)Words)[field];
        set => MemoryMarshal.AsBytes((Span<ulong>)Words)[field] = value;
    }

    public readonly bool Equals(StateVector other) =>
        ((ReadOnlySpan<ulong>)Words).SequenceEqual((ReadOnlySpan<ulong>)other.Words);

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
