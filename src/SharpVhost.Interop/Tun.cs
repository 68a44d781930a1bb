using System.Runtime.InteropServices;
using System.Text;

namespace SharpVhost.Interop;

/// <summary>One piece of a gathered write: where it is in our address space and how long.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct IoVector(nint address, nuint length)
{
    public readonly nint Address = address;
    public readonly nuint Length = length;
}

/// <summary>
/// A queue of a Linux TAP interface opened through <c>/dev/net/tun</c> with virtio-net headers
/// (IFF_VNET_HDR): every frame read or written is preceded by a <c>virtio_net_hdr</c> of the size set
/// with <see cref="SetVnetHeaderSize"/>, so a guest's frames pass through with their offload metadata.
/// Non-blocking; owns its descriptor.
/// </summary>
public sealed unsafe partial class Tun : IDisposable
{
    private const uint TUNSETIFF = 0x400454ca, TUNSETOFFLOAD = 0x400454d0, TUNSETVNETHDRSZ = 0x400454d8;
    private const short IFF_TAP = 0x0002, IFF_MULTI_QUEUE = 0x0100, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000;
    private const int O_RDWR = 2, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    private const int IfReqSize = 40, IfNameSize = 16;

    /// <summary>TUNSETOFFLOAD bits: what the kernel may hand us unfinished (the guest finishes it).</summary>
    public const uint OffloadCsum = 1, OffloadTso4 = 2, OffloadTso6 = 4, OffloadTsoEcn = 8, OffloadUfo = 0x10;

    private int _fd;

    public int Fd => _fd;
    public string Name { get; }

    private Tun(int fd, string name)
    {
        _fd = fd;
        Name = name;
    }

    /// <summary>Opens (creating if needed) TAP interface <paramref name="name"/>; with <paramref name="multiQueue"/> each call adds a queue.</summary>
    public static Tun Open(string name, bool multiQueue)
    {
        if (Encoding.ASCII.GetByteCount(name) >= IfNameSize) throw new ArgumentException($"interface name '{name}' is longer than {IfNameSize - 1} bytes");
        int fd = Open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) throw Libc.Error("open /dev/net/tun");
        byte* ifr = stackalloc byte[IfReqSize];
        new Span<byte>(ifr, IfReqSize).Clear();
        Encoding.ASCII.GetBytes(name, new Span<byte>(ifr, IfNameSize));
        *(short*)(ifr + IfNameSize) = (short)(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multiQueue ? IFF_MULTI_QUEUE : 0));
        if (Ioctl(fd, TUNSETIFF, ifr) != 0)
        {
            var error = Libc.Error($"TUNSETIFF {name}");
            Libc.Close(fd);
            throw error;
        }
        string actual = Encoding.ASCII.GetString(new ReadOnlySpan<byte>(ifr, IfNameSize)).TrimEnd('\0');
        return new Tun(fd, actual);
    }

    public void SetVnetHeaderSize(int size)
    {
        if (Ioctl(_fd, TUNSETVNETHDRSZ, &size) != 0) throw Libc.Error("TUNSETVNETHDRSZ");
    }

    public void SetOffload(uint offloads)
    {
        if (IoctlValue(_fd, TUNSETOFFLOAD, offloads) != 0) throw Libc.Error("TUNSETOFFLOAD");
    }

    /// <summary>Writes one frame (header first) gathered from <paramref name="pieces"/>; false if the kernel refused it (queue full, bad header).</summary>
    public bool Write(ReadOnlySpan<IoVector> pieces)
    {
        fixed (IoVector* v = pieces)
        {
            while (true)
            {
                nint n = Writev(_fd, v, pieces.Length);
                if (n >= 0) return true;
                if (Libc.LastErrno != Libc.EINTR) return false;
            }
        }
    }

    public bool Write(ReadOnlySpan<byte> headerAndFrame)
    {
        fixed (byte* p = headerAndFrame)
        {
            var v = new IoVector((nint)p, (nuint)headerAndFrame.Length);
            return Write(new ReadOnlySpan<IoVector>(&v, 1));
        }
    }

    /// <summary>Reads one frame (header first); returns its length, or 0 when none is waiting.</summary>
    public int Read(Span<byte> destination)
    {
        fixed (byte* p = destination)
        {
            while (true)
            {
                nint n = Libc.Read(_fd, p, (nuint)destination.Length);
                if (n >= 0) return (int)n;
                int errno = Libc.LastErrno;
                if (errno == Libc.EINTR) continue;
                if (errno == Libc.EAGAIN) return 0;
                throw Libc.Error("read tap", errno);
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, nuint request, void* argument);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlValue(int fd, nuint request, nuint argument);

    [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
    private static partial nint Writev(int fd, IoVector* iov, int count);

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Libc.Close(fd);
    }
}
