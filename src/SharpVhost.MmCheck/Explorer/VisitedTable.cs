using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Explorer;

/// <summary>
/// The state store shared by explorer threads: lock-striped hash tables keyed by the exact state.
/// Each entry remembers the sleep set it was explored with and the depth it was reached at, so a state
/// reached again is skipped only when that earlier exploration covers everything this visit would do.
/// </summary>
public sealed class VisitedTable
{
    private const int Stripes = 64;
    private readonly Dictionary<StateVector, ulong>[] _tables = new Dictionary<StateVector, ulong>[Stripes];
    private long _count;

    public VisitedTable()
    {
        for (int i = 0; i < Stripes; i++) _tables[i] = new Dictionary<StateVector, ulong>();
    }

    public long Count => Interlocked.Read(ref _count);

    private static ulong Pack(uint sleep, int depth) => ((ulong)(uint)depth << 32) | sleep;

    /// <summary>
    /// Records a visit with sleep set <paramref name="sleep"/> at <paramref name="depth"/>. Returns false when an
    /// earlier visit already explored at least as much. Otherwise <paramref name="only"/> says which actors'
    /// steps still need exploring: all of them on a first visit (or one at a smaller depth, where the step bound
    /// cut less), else just those the earlier visit had asleep and this one has awake (state caching with
    /// sleep sets as in Godefroid's thesis, ch. 6).
    /// </summary>
    public bool Visit(in StateVector s, uint sleep, int depth, out uint only)
    {
        ulong h = s.Hash64();
        var t = _tables[(int)(h >> 58)];
        only = uint.MaxValue;
        lock (t)
        {
            if (!t.TryGetValue(s, out ulong e))
            {
                t[s] = Pack(sleep, depth);
                Interlocked.Increment(ref _count);
                return true;
            }
            uint oldSleep = (uint)e;
            int oldDepth = (int)(e >> 32);
            if (depth < oldDepth)
            {
                t[s] = Pack(sleep, depth);
                return true;
            }
            if ((oldSleep & ~sleep) == 0) return false;
            only = oldSleep & ~sleep;
            t[s] = Pack(oldSleep & sleep, oldDepth);
            return true;
        }
    }
}
