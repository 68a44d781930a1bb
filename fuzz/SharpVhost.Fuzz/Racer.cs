namespace SharpVhost.Fuzz;

/// <summary>
/// Racing mode (<c>FUZZ_RACE=1</c>, or <see cref="Enabled"/> set by a test): while a target's device
/// works, a second thread keeps flipping a few bytes of the memory the guest or frontend may write
/// (rings, indirect tables, inflight records), between the value the input put there and that value
/// XOR a mask. A device that checks a value where it lies and reads it again afterwards (a double
/// fetch) then sees two different values, and the difference shows up as a crash, an out-of-range
/// access or a failed oracle instead of waiting for a review. The thread is one for the process and
/// sleeps unless armed; <see cref="Disarm"/> returns once it no longer touches the memory, so the
/// memory may be unmapped or reloaded right after.
/// </summary>
public static unsafe class Racer
{
    public const int MaxSpots = 16;

    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("FUZZ_RACE") == "1";

    private static readonly byte*[] Spots = new byte*[MaxSpots];
    private static readonly byte[] Values = new byte[MaxSpots], Masks = new byte[MaxSpots];
    private static int _count;
    private static int[] _nonZero = [];
    private static int _armed, _inside;
    private static Thread? _thread;
    private static readonly Lock Starting = new();
    private static readonly SemaphoreSlim Go = new(0);

    /// <summary>How many bursts of flips the racer has made (a run that never raced tells nothing).</summary>
    public static long Bursts;

    /// <summary>
    /// Picks up to <see cref="MaxSpots"/> bytes to flip among the non-zero bytes of <paramref name="image"/>
    /// (what the input laid out: ring entries, descriptors, records), byte <c>i</c> of which lives at
    /// <paramref name="addressOf"/>(i), chosen and masked from <paramref name="seed"/>, and starts
    /// flipping them. No-op unless <see cref="Enabled"/>.
    /// </summary>
    public static void Arm(ReadOnlySpan<byte> image, Func<int, nint> addressOf, ulong seed)
    {
        if (!Enabled) return;
        // Not waiting for the racer here: a flip of the previous run still in progress lands in memory
        // that run's caller kept mapped (callers that unmap wait in their own Disarm).
        Interlocked.Exchange(ref _armed, 0);
        if (_nonZero.Length < image.Length) _nonZero = new int[image.Length];
        int nonZero = 0;
        for (int j = 0; j < image.Length; j++) if (image[j] != 0) _nonZero[nonZero++] = j;
        if (nonZero == 0) return;
        var random = new Random((int)(seed ^ (seed >> 32)));
        int count = Math.Min(MaxSpots, nonZero);
        for (int i = 0; i < count; i++)
        {
            int at = _nonZero[random.Next(nonZero)];
            Spots[i] = (byte*)addressOf(at);
            Values[i] = image[at];
            // High bits push counts and indexes past their bounds; low bits make near misses.
            Masks[i] = random.Next(3) switch { 0 => 0x80, 1 => 0xff, _ => (byte)random.Next(1, 256) };
        }
        _count = count;
        EnsureThread();
        Interlocked.Exchange(ref _armed, 1);
        if (Go.CurrentCount == 0) Go.Release();
    }

    /// <summary>
    /// Stops flipping. With <paramref name="wait"/> it returns only once the racer is out of the memory,
    /// so the memory may be unmapped next; without, a last flip may land after it returns (fine for
    /// memory that stays mapped and is reloaded before the next run).
    /// </summary>
    public static void Disarm(bool wait = true)
    {
        if (Volatile.Read(ref _armed) == 0) return;
        Interlocked.Exchange(ref _armed, 0);
        if (!wait) return;
        var spin = new SpinWait();
        while (Volatile.Read(ref _inside) != 0) spin.SpinOnce(-1);
    }

    private static void EnsureThread()
    {
        if (_thread is not null) return;
        lock (Starting)
        {
            if (_thread is not null) return;
            _thread = new Thread(Run) { IsBackground = true, Name = "fuzz racer" };
            _thread.Start();
        }
    }

    private static void Run()
    {
        while (true)
        {
            Go.Wait(); // asleep between runs: an idle racer takes no CPU from the target
            while (true)
            {
                // Dekker with Disarm: either it sees us inside and waits, or we see it disarmed and keep out.
                Interlocked.Exchange(ref _inside, 1);
                if (Volatile.Read(ref _armed) == 0)
                {
                    Volatile.Write(ref _inside, 0);
                    break;
                }
                for (int round = 0; round < 16; round++)
                    for (int i = 0; i < _count; i++)
                    {
                        Volatile.Write(ref *Spots[i], (byte)(Values[i] ^ Masks[i]));
                        Volatile.Write(ref *Spots[i], Values[i]);
                    }
                Interlocked.Increment(ref Bursts);
                Volatile.Write(ref _inside, 0);
            }
        }
    }
}
