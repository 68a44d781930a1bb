using System.Runtime.InteropServices;

namespace SharpVhost.Bench;

/// <summary>
/// Pins threads to CPUs with sched_setaffinity. .NET's Process.ProcessorAffinity changes only the
/// main thread on Linux, so the whole process is pinned thread by thread (threads created later
/// inherit the mask of the thread that creates them).
/// </summary>
public static partial class ThreadAffinity
{
    /// <summary>Pins the calling thread to <paramref name="cpu"/>.</summary>
    public static void PinCurrentThread(int cpu) => Set(0, cpu);

    /// <summary>Pins every thread of this process to <paramref name="cpu"/>; returns how many were pinned.</summary>
    public static int PinProcess(int cpu)
    {
        int pinned = 0;
        foreach (var dir in Directory.GetDirectories("/proc/self/task"))
            if (int.TryParse(Path.GetFileName(dir), out int tid) && TrySet(tid, cpu)) pinned++;
        return pinned;
    }

    /// <summary>Allows every thread of this process on every CPU again.</summary>
    public static void UnpinProcess()
    {
        foreach (var dir in Directory.GetDirectories("/proc/self/task"))
            if (int.TryParse(Path.GetFileName(dir), out int tid)) SetMask(tid, ulong.MaxValue);
    }

    private static void Set(int tid, int cpu)
    {
        if (!TrySet(tid, cpu)) throw new IOException($"sched_setaffinity(cpu {cpu}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    private static bool TrySet(int tid, int cpu) => cpu is >= 0 and < 64 && SetMask(tid, 1ul << cpu);

    private static unsafe bool SetMask(int tid, ulong mask)
    {
        ulong bits = mask;
        return SchedSetAffinity(tid, (nuint)sizeof(ulong), &bits) == 0;
    }

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static unsafe partial int SchedSetAffinity(int pid, nuint size, ulong* mask);
}
