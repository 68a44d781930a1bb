using System.Diagnostics;
using System.Runtime.InteropServices;
using SharpVhost.Interop;

namespace SharpVhost.Bench.Floor;

/// <summary>
/// The floor for moving data: memcpy bandwidth in 1 MiB blocks, walking a source as large as the RAM
/// disk into a few rotating destination buffers, as sequential reads from a RAM disk copy disk pages
/// into request buffers. Runs on one pinned thread.
/// </summary>
public static unsafe class MemcpyMeter
{
    public const int BlockSize = 1 << 20;

    public static double MeasureBytesPerSecond(int cpu, long sourceBytes, int destinations, TimeSpan duration)
    {
        double result = 0;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            byte* source = null, destination = null;
            try
            {
                ThreadAffinity.PinCurrentThread(cpu);
                long blocks = sourceBytes / BlockSize;
                source = (byte*)NativeMemory.AlignedAlloc((nuint)sourceBytes, 4096);
                destination = (byte*)NativeMemory.AlignedAlloc((nuint)destinations * BlockSize, 4096);
                new Span<byte>(destination, destinations * BlockSize).Fill(1);
                for (long b = 0; b < blocks; b++) new Span<byte>(source + b * BlockSize, BlockSize).Fill((byte)b); // touch every page
                long copied = 0, block = 0;
                long warmEnd = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 20;
                while (Stopwatch.GetTimestamp() < warmEnd) Copy(source, destination, blocks, destinations, ref block);
                long start = Stopwatch.GetTimestamp(), end = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
                while (Stopwatch.GetTimestamp() < end)
                {
                    Copy(source, destination, blocks, destinations, ref block);
                    copied += BlockSize;
                }
                result = copied / Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
            catch (Exception e) { failure = e; }
            finally
            {
                NativeMemory.AlignedFree(source);
                NativeMemory.AlignedFree(destination);
            }
        }) { Name = "floor-memcpy" };
        thread.Start();
        thread.Join();
        if (failure is not null) throw new InvalidOperationException("memcpy measurement failed: " + failure.Message, failure);
        return result;
    }

    private static void Copy(byte* source, byte* destination, long blocks, int destinations, ref long block)
    {
        Buffer.MemoryCopy(source + (block % blocks) * BlockSize, destination + (block % destinations) * BlockSize, BlockSize, BlockSize);
        block++;
    }
}
