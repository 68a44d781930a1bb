using System.Runtime.CompilerServices;
using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>An address the IOTLB has no entry for: the queue stops where it was and asks the frontend (not a guest error).</summary>
public readonly record struct IotlbMiss(ulong Iova, bool Write);

/// <summary>Thrown inside a pop or a bind when the IOTLB misses; caught by the queue, which records it and backs out.</summary>
internal sealed class IotlbMissException(IotlbMiss miss) : Exception($"IOTLB miss at iova {miss.Iova:x}")
{
    public IotlbMiss Miss { get; } = miss;
}

/// <summary>
/// Turns buffer descriptors into translated segments, for split and packed queues alike: one lookup
/// for the common buffer inside one region, the slow walk for buffers across regions or IOTLB entries.
/// </summary>
internal static class BufferTranslation
{
    /// <summary>Segments are handed out as spans, so none may be longer than a span (descriptors may be up to 4 GiB - 1).</summary>
    private const ulong MaxSegment = 1UL << 30;

    /// <summary>Translates one descriptor into <paramref name="chain"/>, split where it crosses regions or exceeds <see cref="MaxSegment"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddDescriptor(GuestMemory memory, ulong address, uint length, bool write, DescriptorChain chain)
    {
        if (length == 0) return;
        if (address + length < address) throw new VirtqueueException($"descriptor address {address:x} + length {length} overflows");
        if (length <= MaxSegment && memory.TryTranslate(address, length, write, out nint host, out ulong gpa))
        {
            chain.Add(new BufferSegment(gpa, length, write, host));
            return;
        }
        AddSlow(memory, address, length, write, chain);
    }

    private static void AddSlow(GuestMemory memory, ulong address, uint length, bool write, DescriptorChain chain)
    {
        ulong at = address;
        ulong remaining = length;
        while (remaining > 0)
        {
            var status = memory.TranslatePrefix(at, remaining, write, DeviceAddressKind.Buffer, out nint host, out ulong gpa, out ulong n);
            if (status != TranslationStatus.Mapped) throw Failure(status, at, $"buffer [{address:x}, +{length})", write, memory);
            n = Math.Min(n, MaxSegment);
            chain.Add(new BufferSegment(gpa, (uint)n, write, host));
            at += n;
            remaining -= n;
        }
    }

    /// <summary>Checks a whole indirect table, not just the entries a chain follows.</summary>
    public static void CheckIndirectTable(GuestMemory memory, ulong address, uint length)
    {
        var status = memory.Check(address, length, IotlbAccess.Read, DeviceAddressKind.Buffer, out ulong stoppedAt);
        if (status != TranslationStatus.Mapped) throw Failure(status, stoppedAt, $"indirect table [{address:x}, +{length})", false, memory);
    }

    /// <summary>Reads one indirect-table entry through the checked path (tables across regions or IOTLB entries).</summary>
    public static T ReadChecked<T>(GuestMemory memory, ulong address) where T : unmanaged
    {
        try { return memory.Read<T>(address); }
        catch (GuestMemoryException e) { throw new VirtqueueException("indirect table: " + e.Message); }
    }

    /// <summary>The exception for a failed translation: a miss to resolve, or the guest's error.</summary>
    public static Exception Failure(TranslationStatus status, ulong at, string what, bool write, GuestMemory memory) => status switch
    {
        TranslationStatus.IotlbMiss => new IotlbMissException(new IotlbMiss(at, write)),
        TranslationStatus.Denied when memory.Iotlb is not null => new VirtqueueException($"{what} is not {(write ? "writable" : "readable")} through its IOTLB entry or region (at {at:x})"),
        _ => new VirtqueueException($"{what} is not {(write ? "writable " : "")}guest memory"),
    };
}
