using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>
/// A raw image file. Buffered by default; with <c>direct</c> the file is opened with O_DIRECT too, and
/// requests whose guest buffers meet O_DIRECT's alignment go through that handle (guest pages usually
/// do), the rest through the buffered one.
/// </summary>
public sealed class FileStorage : IBlockStorage
{
    private const int DirectAlignment = 512;
    private readonly SafeFileHandle _buffered;
    private readonly SafeFileHandle? _direct;

    public long Capacity { get; }
    public bool ReadOnly { get; }
    public bool SupportsDiscard => !ReadOnly;
    public string Description { get; }

    public FileStorage(string path, bool readOnly, bool direct = false)
    {
        var access = readOnly ? FileAccess.Read : FileAccess.ReadWrite;
        _buffered = File.OpenHandle(path, FileMode.Open, access, FileShare.ReadWrite);
        if (direct) _direct = File.OpenHandle(path, FileMode.Open, access, FileShare.ReadWrite, (FileOptions)0x4000 /* O_DIRECT */);
        Capacity = RandomAccess.GetLength(_buffered);
        ReadOnly = readOnly;
        Description = $"file {path}{(direct ? " (O_DIRECT)" : "")}{(readOnly ? " read-only" : "")}";
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

    /// <summary>The synchronous adapter for now: each request runs on the queue's thread.</summary>
    public IBlockQueueEngine CreateQueueEngine(int depth) => new SynchronousQueueEngine(this, depth);

    public void Dispose()
    {
        _direct?.Dispose();
        _buffered.Dispose();
    }
}
