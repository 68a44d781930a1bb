namespace SharpVhost.Interop;

/// <summary>
/// Pins threads to CPUs with sched_setaffinity. .NET's <c>Process.ProcessorAffinity</c> changes only the
/// main thread on Linux, so a whole process is pinned thread by thread (threads created later inherit
/// the mask of the thread that creates them). CPUs are numbered as the kernel numbers them, from 0 to
/// <see cref="MaxCpu"/>.
/// </summary>
public static unsafe class ThreadAffinity
{
    /// <summary>The highest CPU number a mask here can name (a glibc <c>cpu_set_t</c>: 1024 CPUs).</summary>
    public const int MaxCpu = MaskWords * 64 - 1;

    private const int MaskWords = 16;

    /// <summary>Pins the calling thread to <paramref name="cpu"/>.</summary>
    /// <exception cref="IOException">The kernel refused, e.g. the CPU is offline or outside this process's cpuset.</exception>
    public static void PinCurrentThread(int cpu)
    {
        if (!TryPin(0, cpu, out int errno)) throw Libc.Error($"sched_setaffinity(cpu {cpu})", errno);
    }

    /// <summary>Pins every thread of this process to <paramref name="cpu"/>; returns how many were pinned.</summary>
    /// <remarks>Threads that exit meanwhile, or that the kernel refuses to move, are skipped.</remarks>
    public static int PinProcess(int cpu)
    {
        CheckCpu(cpu);
        int pinned = 0;
        foreach (int tid in ThreadsOfThisProcess())
            if (TryPin(tid, cpu, out _)) pinned++;
        return pinned;
    }

    /// <summary>Allows every thread of this process on every CPU again.</summary>
    public static void UnpinProcess()
    {
        Span<ulong> all = stackalloc ulong[MaskWords];
        all.Fill(ulong.MaxValue);
        foreach (int tid in ThreadsOfThisProcess()) SetMask(tid, all, out _);
    }

    /// <summary>The CPUs the calling thread may run on, ascending.</summary>
    public static IReadOnlyList<int> CurrentThreadCpus()
    {
        Span<ulong> mask = stackalloc ulong[MaskWords];
        int result;
        fixed (ulong* bits = mask) result = Libc.SchedGetAffinity(0, (nuint)(mask.Length * sizeof(ulong)), bits);
        if (result != 0) throw Libc.Error("sched_getaffinity");
        var cpus = new List<int>();
        for (int word = 0; word < mask.Length; word++)
            for (int bit = 0; bit < 64; bit++)
                if ((mask[word] & (1ul << bit)) != 0) cpus.Add(word * 64 + bit);
        return cpus;
    }

    private static bool TryPin(int tid, int cpu, out int errno)
    {
        CheckCpu(cpu);
        Span<ulong> mask = stackalloc ulong[MaskWords];
        mask[cpu / 64] = 1ul << (cpu % 64);
        return SetMask(tid, mask, out errno);
    }

    private static bool SetMask(int tid, ReadOnlySpan<ulong> mask, out int errno)
    {
        int result;
        fixed (ulong* bits = mask) result = Libc.SchedSetAffinity(tid, (nuint)(mask.Length * sizeof(ulong)), bits);
        errno = result == 0 ? 0 : Libc.LastErrno;
        return result == 0;
    }

    private static void CheckCpu(int cpu)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cpu);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(cpu, MaxCpu);
    }

    private static IEnumerable<int> ThreadsOfThisProcess()
    {
        foreach (var dir in Directory.GetDirectories("/proc/self/task"))
            if (int.TryParse(Path.GetFileName(dir), out int tid)) yield return tid;
    }
}
