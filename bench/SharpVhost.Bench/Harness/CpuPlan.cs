namespace SharpVhost.Bench;

/// <summary>
/// Where the two sides of every comparison run. Both contenders are placed the same way: the backend
/// (ours or the peer) as a separate process pinned with <c>taskset</c> to <see cref="BackendCpu"/>, the
/// frontend (our library, in this process, or a DPDK frontend) on <see cref="FrontendCpu"/>.
/// </summary>
public sealed record CpuPlan(int FrontendCpu, int BackendCpu)
{
    public static CpuPlan ForThisMachine() => Environment.ProcessorCount >= 2 ? new CpuPlan(0, 1) : new CpuPlan(0, 0);

    public string Describe(string frontend, string backend) =>
        $"{backend} on CPU {BackendCpu} (taskset -c {BackendCpu}); {frontend} on CPU {FrontendCpu} (sched_setaffinity of every thread)";
}
