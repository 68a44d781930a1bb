using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using SharpVhost.Interop;

namespace SharpVhost.VhostUser.Protocol;

/// <summary>
/// The file descriptors that arrived with one message. The message owns them until a handler
/// takes one (<see cref="Take"/>, <see cref="TakeRaw"/>, <see cref="TakeSocket"/>); whatever is left
/// is closed on <see cref="Dispose"/>, so a rejected or ignored message never leaks an fd.
/// </summary>
public sealed class ReceivedFds : IDisposable
{
    private readonly int[] _fds;
    private int _count;

    /// <summary>Takes ownership of <paramref name="fds"/> (negative values are placeholders, e.g. from fuzzing).</summary>
    internal ReceivedFds(ReadOnlySpan<int> fds)
    {
        _fds = fds.IsEmpty ? [] : fds.ToArray();
        _count = fds.Length;
    }

    /// <summary>How many fds came with the message (taken or not).</summary>
    public int Count => _count;

    /// <summary>True when the fd at <paramref name="index"/> was already taken.</summary>
    public bool IsTaken(int index)
    {
        CheckIndex(index);
        return _fds[index] == Taken;
    }

    /// <summary>Takes the fd at <paramref name="index"/> as a handle the caller now owns (and must dispose).</summary>
    public SafeFileHandle Take(int index) => new((IntPtr)TakeRaw(index), ownsHandle: true);

    /// <summary>Takes the fd at <paramref name="index"/> as a connected socket (SET_BACKEND_REQ_FD).</summary>
    public Socket TakeSocket(int index) => UnixSockets.FromFd(TakeRaw(index));

    /// <summary>Takes the raw fd at <paramref name="index"/>; the caller now must close it.</summary>
    public int TakeRaw(int index)
    {
        CheckIndex(index);
        int fd = _fds[index];
        if (fd == Taken) throw new InvalidOperationException($"File descriptor {index} was already taken.");
        _fds[index] = Taken;
        return fd;
    }

    /// <summary>Closes every fd nobody took.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _count; i++)
        {
            if (_fds[i] != Taken)
            {
                UnixSockets.CloseFd(_fds[i]);
                _fds[i] = Taken;
            }
        }
    }

    // Marks a consumed slot; never a valid fd and distinct from the -1 placeholders fuzzers use.
    private const int Taken = int.MinValue;

    private void CheckIndex(int index)
    {
        if ((uint)index >= (uint)_count)
            throw new ArgumentOutOfRangeException(nameof(index), $"Message carries {_count} file descriptors.");
    }
}
