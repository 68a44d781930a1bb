using SharpVhost.Memory;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Devices.Net;

/// <summary>
/// A receive queue: copies waiting frames into the guest's receive buffers, many per batch, then the
/// worker publishes them with one used-index write and at most one interrupt. With mergeable buffers a
/// frame may take several chains (num_buffers says how many). A frame waits while the guest has too
/// few buffers; a frame that can never fit is dropped and counted. Only this queue's worker runs this.
/// </summary>
internal sealed class RxQueueProcessor : IQueueProcessor, IDisposable
{
    /// <summary>Most buffers one frame may take (a 64 KiB frame in 1.5 KiB buffers needs 44).</summary>
    private const int MaxBuffersPerFrame = 64;
    private readonly NetPort _port;
    private readonly IRxFrameSource _source;
    private readonly int _pair;
    private readonly DescriptorChain[] _chains = new DescriptorChain[MaxBuffersPerFrame];
    private readonly int[] _written = new int[MaxBuffersPerFrame];

    public RxQueueProcessor(NetPort port, int pair, IRxFrameSource source)
    {
        _port = port;
        _pair = pair;
        _source = source;
        port.MarkRxStarted(pair);
        for (int i = 0; i < _chains.Length; i++) _chains[i] = new DescriptorChain(4);
    }

    public int WakeFd => _source.WakeFd;

    /// <summary>
    /// The last pass ended because no frame was waiting (the source armed its wake descriptor when it
    /// found itself empty). The guest's buffers are then no reason to run again: the worker sleeps
    /// until a frame arrives (WakeFd) or the guest kicks.
    /// </summary>
    public bool IdleUntilWake { get; private set; }

    public int Process(IDeviceQueue queue, GuestMemory memory, int budget)
    {
        var counters = _port.Counters;
        int headerSize = _port.HeaderSize;
        bool mergeable = _port.MergeableRxBuffers;
        int maxBuffers = mergeable ? Math.Min(MaxBuffersPerFrame, queue.Size) : 1;
        int used = 0;
        long frames = 0, bytes = 0; // added to the shared counters once per batch
        _source.BeginBatch();
        IdleUntilWake = false;
        while (used < budget)
        {
            if (!_source.TryPeek(out var header, out var frame))
            {
                IdleUntilWake = true;
                break;
            }
            int total = headerSize + frame.Length;
            int count = 0;
            long room = 0;
            while (room < total && count < maxBuffers && queue.TryPop(_chains[count]))
            {
                var chain = _chains[count];
                if (count == 0 && chain.WritableBytes < headerSize)
                {
                    // Not even room for the header: no frame can ever use it; give it back empty.
                    queue.AddUsed(chain, 0);
                    Interlocked.Increment(ref counters.RxBadBuffer);
                    used++;
                    if (used >= budget) break; // a ring full of such buffers must not outlast the batch
                    continue;
                }
                room += chain.WritableBytes;
                count++;
            }
            if (room < total)
            {
                // The batch went on buffers too small for a header: the frame waits for the next batch.
                if (count == 0 && used >= budget) break;
                queue.UndoPop(count);
                if (queue.IsBroken || queue.PendingMiss is not null) break; // a miss: the frame waits for the translation
                if (count < maxBuffers)
                {
                    // The ring ran dry. Wait for a refill (the kick wakes us) unless the source cannot wait.
                    if (_source.DropWhenNoBuffers()) { Interlocked.Increment(ref counters.RxNoBuffers); continue; }
                    break;
                }
                // Even the most buffers a frame may take are too small: drop it, keep the buffers.
                _source.Consume();
                Interlocked.Increment(ref counters.RxBufferTooSmall);
                continue;
            }
            Fill(header, frame, count, headerSize, mergeable);
            for (int i = 0; i < count; i++) queue.AddUsed(_chains[i], (uint)_written[i]);
            _source.Consume();
            used += count;
            frames++;
            bytes += frame.Length;
        }
        if (frames != 0)
        {
            Interlocked.Add(ref counters.RxFrames, frames);
            Interlocked.Add(ref counters.RxBytes, bytes);
        }
        return used;
    }

    /// <summary>The queue stopped (disabled, or the frontend went away): frames go to the other receive queues.</summary>
    public void Dispose()
    {
        _port.MarkRxStopped(_pair);
    }

    /// <summary>Writes the header (num_buffers = <paramref name="count"/>) and the frame across the first <paramref name="count"/> chains.</summary>
    private void Fill(VirtioNetHeader header, ReadOnlySpan<byte> frame, int count, int headerSize, bool mergeable)
    {
        Span<byte> headerBytes = stackalloc byte[VirtioNet.HeaderSize];
        header.NumBuffers = (ushort)(mergeable ? count : 1);
        header.Write(headerBytes, headerSize);
        _chains[0].CopyToWritable(0, headerBytes[..headerSize]);
        int start = headerSize;
        for (int i = 0; i < count; i++)
        {
            int n = _chains[i].CopyToWritable(start, frame);
            _written[i] = start + n;
            frame = frame[n..];
            start = 0;
        }
    }
}
