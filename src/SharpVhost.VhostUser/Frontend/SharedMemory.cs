using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;
using SharpVhost.Memory;

namespace SharpVhost.VhostUser.Frontend;

/// <summary>
/// The frontend's guest memory: one memfd region, mapped here and shared with the backend, with a
/// bump allocator for rings and buffers. Guest-physical addresses start at 0; the "frontend virtual"
/// addresses we announce are offset by <see cref="VirtualBase"/> so that a backend confusing the two
/// address spaces fails loudly instead of working by accident.
/// </summary>
public sealed class SharedMemory : IDisposable
{
    public const ulong VirtualBase = 0x1000_0000_0000;
    private readonly object _lock = new();
    private ulong _next;

    public SafeFileHandle Fd { get; }
    public ulong Size { get; }
    public GuestMemory Memory { get; }
    public RegionDescription Region { get; }

    public SharedMemory(ulong size)
    {
        ulong page = (ulong)FileDescriptors.PageSize;
        Size = (size + page - 1) / page * page;
        Fd = FileDescriptors.CreateMemfd("sharpvhost-frontend", (long)Size);
        Region = new RegionDescription(0, Size, VirtualBase, 0);
        Memory = GuestMemory.Create([MemoryRegion.Map(Fd, Region)], null, 1);
    }

    /// <summary>Reserves <paramref name="size"/> bytes aligned to <paramref name="alignment"/>; returns the guest-physical address.</summary>
    public ulong Allocate(ulong size, ulong alignment = 64)
    {
        lock (_lock)
        {
            ulong start = (_next + alignment - 1) & ~(alignment - 1);
            if (start + size > Size || start + size < start) throw new OutOfMemoryException($"shared memory of {Size} bytes is exhausted");
            _next = start + size;
            return start;
        }
    }

    public ulong ToFrontendVirtual(ulong gpa) => gpa + VirtualBase;

    public Span<byte> GetSpan(ulong gpa, int length) => Memory.GetSpan(gpa, length, write: true);

    public void Dispose()
    {
        foreach (var r in Memory.Regions) r.Dispose();
        Fd.Dispose();
    }
}
