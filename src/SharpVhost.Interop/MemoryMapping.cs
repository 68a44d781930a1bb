using Microsoft.Win32.SafeHandles;

namespace SharpVhost.Interop;

/// <summary>
/// One mmap of a file descriptor (or anonymous memory). The address stays valid until
/// <see cref="Dispose"/> unmaps it; after that any access through it faults, which is exactly what
/// the invalidation tests rely on to prove nothing touches an old mapping.
/// </summary>
public sealed class MemoryMapping : IDisposable
{
    private nint _address;

    public nint Address => _address;
    public ulong Length { get; }
    public bool Writable { get; }
    public bool IsUnmapped => _address == 0;

    private MemoryMapping(nint address, ulong length, bool writable)
    {
        _address = address;
        Length = length;
        Writable = writable;
    }

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> from a page-aligned <paramref name="offset"/>, shared.</summary>
    public static MemoryMapping Map(SafeFileHandle fd, ulong offset, ulong length, bool writable)
    {
        if (length == 0) throw new ArgumentOutOfRangeException(nameof(length), "cannot map zero bytes");
        if (offset % (ulong)FileDescriptors.PageSize != 0) throw new ArgumentException("mmap offset must be page aligned", nameof(offset));
        if (offset > long.MaxValue || length > long.MaxValue) throw new ArgumentOutOfRangeException(nameof(length));
        int prot = Libc.PROT_READ | (writable ? Libc.PROT_WRITE : 0);
        nint address = Libc.Mmap(0, (nuint)length, prot, Libc.MAP_SHARED | Libc.MAP_NORESERVE, (int)fd.DangerousGetHandle(), (long)offset);
        if (address == Libc.MAP_FAILED) throw Libc.Error("mmap");
        return new MemoryMapping(address, length, writable);
    }

    /// <summary>Private anonymous memory, zero-filled (scratch buffers, RAM disks).</summary>
    public static MemoryMapping Anonymous(ulong length)
    {
        nint address = Libc.Mmap(0, (nuint)length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        if (address == Libc.MAP_FAILED) throw Libc.Error("mmap(anonymous)");
        return new MemoryMapping(address, length, true);
    }

    /// <summary>Changes the protection of the whole mapping (tests use PROT_NONE to trap stray accesses).</summary>
    public void Protect(bool read, bool write)
    {
        int prot = (read ? Libc.PROT_READ : 0) | (write ? Libc.PROT_WRITE : 0);
        if (Libc.Mprotect(_address, (nuint)Length, prot) != 0) throw Libc.Error("mprotect");
    }

    /// <summary>A span over part of the mapping; the caller guarantees the mapping outlives the span.</summary>
    public unsafe Span<byte> GetSpan(ulong offset, int length)
    {
        if (offset > Length || (ulong)length > Length - offset) throw new ArgumentOutOfRangeException(nameof(offset));
        return new Span<byte>((byte*)_address + offset, length);
    }

    /// <summary>Unmaps; idempotent and safe to call from several threads.</summary>
    public void Dispose()
    {
        nint address = Interlocked.Exchange(ref _address, 0);
        if (address != 0 && Libc.Munmap(address, (nuint)Length) != 0) throw Libc.Error("munmap");
    }
}
