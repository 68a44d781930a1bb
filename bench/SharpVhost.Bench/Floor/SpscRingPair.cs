using System.Runtime.InteropServices;

namespace SharpVhost.Bench.Floor;

/// <summary>
/// The floor for a ring handoff: the least a request/completion queue between two threads can cost.
/// Two single-producer/single-consumer rings of 32-bit slots in shared memory (requests one way,
/// completions the other), each index on its own cache line, both sides busy-polling. Every handoff
/// moves the slot's and the index's cache lines from one core to the other, once each way.
/// </summary>
public sealed unsafe class SpscRingPair : IDisposable
{
    private const int CacheLine = 64;
    private readonly int _size;
    private readonly byte* _memory;
    private readonly uint* _requests, _completions;
    private readonly ulong* _requestHead, _requestTail, _completionHead, _completionTail; // head: producer's, tail: consumer's

    public SpscRingPair(int size)
    {
        if (size <= 0 || (size & (size - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(size), "a power of two");
        _size = size;
        nuint slots = (nuint)(size * sizeof(uint));
        nuint bytes = 4 * CacheLine + 2 * (slots + CacheLine);
        _memory = (byte*)NativeMemory.AlignedAlloc(bytes, CacheLine);
        NativeMemory.Clear(_memory, bytes);
        _requestHead = (ulong*)_memory;
        _requestTail = (ulong*)(_memory + CacheLine);
        _completionHead = (ulong*)(_memory + 2 * CacheLine);
        _completionTail = (ulong*)(_memory + 3 * CacheLine);
        _requests = (uint*)(_memory + 4 * CacheLine);
        _completions = (uint*)(_memory + 4 * CacheLine + slots + CacheLine);
    }

    /// <summary>Driver side: posts as many requests as there is room for. Returns how many.</summary>
    public int Post(ref ulong nextId, int window)
    {
        ulong head = *_requestHead;
        ulong limit = Volatile.Read(ref *_completionHead); // completed requests free their slots
        int posted = 0;
        while (head - limit < (ulong)window && head - Volatile.Read(ref *_requestTail) < (ulong)_size)
        {
            _requests[head & (ulong)(_size - 1)] = (uint)nextId++;
            head++;
            Volatile.Write(ref *_requestHead, head);
            posted++;
        }
        return posted;
    }

    /// <summary>Driver side: takes every completion there is. Returns how many.</summary>
    public int Reap()
    {
        ulong tail = *_completionTail;
        ulong head = Volatile.Read(ref *_completionHead);
        int n = 0;
        while (tail != head)
        {
            _ = _completions[tail & (ulong)(_size - 1)];
            tail++;
            n++;
        }
        Volatile.Write(ref *_completionTail, tail);
        return n;
    }

    /// <summary>
    /// Device side: moves up to <paramref name="budget"/> waiting requests to the completion ring and
    /// publishes them with one index write, as our queue worker flushes the used index once per batch.
    /// </summary>
    public int Serve(int budget)
    {
        ulong tail = *_requestTail;
        ulong head = Volatile.Read(ref *_requestHead);
        ulong outHead = *_completionHead;
        int n = 0;
        while (tail != head && n < budget)
        {
            _completions[outHead & (ulong)(_size - 1)] = _requests[tail & (ulong)(_size - 1)];
            tail++;
            outHead++;
            n++;
        }
        if (n == 0) return 0;
        Volatile.Write(ref *_requestTail, tail);
        Volatile.Write(ref *_completionHead, outHead);
        return n;
    }

    public void Dispose() => NativeMemory.AlignedFree(_memory);
}
