using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Explorer;

/// <summary>
/// The state store shared by explorer threads: 64 lock-striped open-addressing tables keyed by the exact
/// state (the 64-bit hash only picks the stripe and slot and speeds up comparisons). Each entry remembers
/// the sleep set it was explored with and the depth it was reached at, so a state reached again is skipped
/// only when that earlier exploration covers everything this visit would do.
/// </summary>
public sealed class VisitedTable
{
    private const int StripeBits = 6;
    private readonly Stripe[] _stripes = new Stripe[1 << StripeBits];
    private long _count;

    public VisitedTable()
    {
        for (int i = 0; i < _stripes.Length; i++) _stripes[i] = new Stripe();
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
        ulong h = s.Hash64() | 1; // 0 marks an empty slot
        var t = _stripes[(int)(h >> (64 - StripeBits))];
        only = uint.MaxValue;
        lock (t)
        {
            int slot = t.Find(s, h);
            if (t.Hashes[slot] == 0)
            {
                t.Insert(slot, s, h, Pack(sleep, depth));
                Interlocked.Increment(ref _count);
                return true;
            }
            ulong e = t.Values[slot];
            uint oldSleep = (uint)e;
            int oldDepth = (int)(e >> 32);
            if (depth < oldDepth)
            {
                t.Values[slot] = Pack(sleep, depth);
                return true;
            }
            if ((oldSleep & ~sleep) == 0) return false;
            only = oldSleep & ~sleep;
            t.Values[slot] = Pack(oldSleep & sleep, oldDepth);
            return true;
        }
    }

    /// <summary>One stripe: linear probing over parallel arrays, doubled at 60 % load.</summary>
    private sealed class Stripe
    {
        public ulong[] Hashes = new ulong[1024];
        public StateVector[] Keys = new StateVector[1024];
        public ulong[] Values = new ulong[1024];
        private int _used;

        /// <summary>The slot holding <paramref name="s"/>, or the empty slot where it would go.</summary>
        public int Find(in StateVector s, ulong h)
        {
            int mask = Hashes.Length - 1;
            int i = (int)h & mask;
            while (true)
            {
                ulong x = Hashes[i];
                if (x == 0 || (x == h && Keys[i].Equals(s))) return i;
                i = (i + 1) & mask;
            }
        }

        public void Insert(int slot, in StateVector s, ulong h, ulong value)
        {
            Hashes[slot] = h;
            Keys[slot] = s;
            Values[slot] = value;
            if (++_used * 5 > Hashes.Length * 3) Grow();
        }

        private void Grow()
        {
            var oh = Hashes;
            var ok = Keys;
            var ov = Values;
            Hashes = new ulong[oh.Length * 2];
            Keys = new StateVector[oh.Length * 2];
            Values = new ulong[oh.Length * 2];
            int mask = Hashes.Length - 1;
            for (int j = 0; j < oh.Length; j++)
            {
                if (oh[j] == 0) continue;
                int i = (int)oh[j] & mask;
                while (Hashes[i] != 0) i = (i + 1) & mask;
                Hashes[i] = oh[j];
                Keys[i] = ok[j];
                Values[i] = ov[j];
            }
        }
    }
}
