using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>
/// A raw image file, opened with open(2). Buffered by default; with <c>direct</c> it is opened a second
/// time with O_DIRECT really passed to the kernel (.NET's FileOptions cannot express it on Linux), and
/// requests whose offset, lengths and guest buffers meet O_DIRECT's alignment go through that fd (guest
/// pages usually do), the rest through the buffered one. Each queue gets its own engine
/// (<see cref="CreateQueueEngine"/>): io_uring or a thread pool, per <see cref="Engine"/>.
/// </summary>
public sealed class FileStorage : IBlockStorage
{
    private const int DirectAlignment = FileOperationSlots.DirectAlignment;
    private readonly SafeFileHandle _buffered;
    private readonly SafeFileHandle? _direct;

    public long Capacity { get; }
    public bool ReadOnly { get; }
    public bool Direct => _direct is not null;
    public bool SupportsDiscard => !ReadOnly;
    public string Description { get; }
    /// <summary>The engine every queue gets: io_uring or threads (never Auto once constructed).</summary>
    public StorageEngineKind Engine { get; }

    public FileStorage(string path, bool readOnly, bool direct = false, StorageEngineKind engine = StorageEngineKind.Auto)
    {
        Engine = StorageEngines.Resolve(engine);
        _buffered = FileIo.Open(path, readOnly, direct: false);
        try
        {
            if (direct) _direct = FileIo.Open(path, readOnly, direct: true);
            Capacity = FileDescriptors.SizeOf(_buffered);
        }
        catch
        {
            _buffered.Dispose();
            throw;
        }
        ReadOnly = readOnly;
        Description = $"file {path}{(direct ? " (O_DIRECT)" : "")}{(readOnly ? " read-only" : "")}, aio={StorageEngines.Name(Engine)}";
    }

    /// <summary>A queue's engine over this file's descriptors, which stay open until the storage is disposed.</summary>
    public IBlockQueueEngine CreateQueueEngine(int depth)
    {
        int buffered = (int)_buffered.DangerousGetHandle();
        int direct = _direct is null ? -1 : (int)_direct.DangerousGetHandle();
        if (Engine == StorageEngineKind.IoUring)
            return IoUringEngine.TryCreate(depth, buffered, direct, out int errno)
                ?? throw new IOException($"io_uring_setup failed: errno {errno}", errno);
        return new ThreadPoolEngine(depth, buffered, direct);
    }

    private SafeFileHandle HandleFor(ReadOnlySpan<byte> buffer, long offset)
    {
        if (_direct is null) return _buffered;
        return offset % DirectAlignment == 0 && SpanAlignment.IsAligned(buffer, DirectAlignment) ? _direct : _buffered;
    }

    public void Read(Span<byte> destination, long offset)
    {
        var handle = HandleFor(destination, offset);
        while (!destination.IsEmpty)
        {
            int n = RandomAccess.Read(handle, destination, offset);
            if (n <= 0) { destination.Clear(); return; } // past the end of a file that shrank: zeroes
            destination = destination[n..];
            offset += n;
        }
    }

    public void Write(ReadOnlySpan<byte> source, long offset) => RandomAccess.Write(HandleFor(source, offset), source, offset);

    public void Flush() => RandomAccess.FlushToDisk(_buffered);

    public void Discard(long offset, long length) => FileDescriptors.PunchHole(_buffered, offset, length);

    public void WriteZeroes(long offset, long length, bool unmap)
    {
        if (FileDescriptors.TryZeroRange(_buffered, offset, length, unmap)) return;
        // Filesystems without fallocate modes: write zeroes.
        Span<byte> zeroes = stackalloc byte[4096];
        zeroes.Clear();
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(zeroes.Length, length - done);
            RandomAccess.Write(_buffered, zeroes[..n], offset + done);
            done += n;
        }
    }

    public void Dispose()
    {
        _direct?.Dispose();
        _buffered.Dispose();
    }
}
