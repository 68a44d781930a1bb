using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using SharpVhost.Devices.Block;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Backend;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.Virtio;

namespace SharpVhost.Fuzz;

/// <summary>
/// The backend session state machine, fed a fuzzed sequence of front-end messages over a real Unix
/// socket pair, with real fds (memfds, eventfds, a socket) where the messages carry them, serving a
/// two-queue block device on a RAM disk. Queue workers start when the sequence starts a ring, and
/// process whatever rings the input laid out in guest memory.
/// <para>Input: byte 0 bit 0 picks the checked metadata accessor. Then frames, each a spec byte and
/// a message (12-byte header, then as many payload bytes as the header's size says, or what is left).
/// Spec bits 0-3: fd count (0-8; 9-15: as many as the message's rule wants); bits 4-6: fd kind
/// (0, 6, 7: what the request wants; 1: the 2 MiB guest memfd; 2: a one-page memfd; 3: a read-only
/// fd of the guest memfd; 4: an eventfd; 5: a socket). Spec bit 7 makes the frame a guest memory write
/// instead: u16 offset in 16-byte units, u8 length, then the bytes.</para>
/// <para>Oracles: nothing escapes <see cref="BackendSession.Serve"/>; when the connection has ended no
/// fd is left open and no mapping of the guest memfd remains.</para>
/// </summary>
public sealed partial class SessionTarget : IFuzzTarget
{
    public const string MemfdName = "fuzz-session-guest";
    private const long GuestFileSize = 2 << 20;
    private const int MaxFrames = 64;
    private const int MaxBytes = 16 * 1024;

    public string Name => "session";
    public string Description => "backend session state machine: a fuzzed message sequence with real fds over a socket pair";

    private static readonly bool Verbose = Environment.GetEnvironmentVariable("FUZZ_VERBOSE") is not null;

    /// <summary>Whether to check for leaked fds and mappings after each run (off when other tests run alongside).</summary>
    public bool CheckLeaks { get; set; } = Environment.GetEnvironmentVariable("FUZZ_SESSION_NO_LEAK_CHECK") is null;

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return;
        var options = new BackendOptions { Metadata = (input[0] & 1) != 0 ? MetadataAccess.Checked : MetadataAccess.Direct };
        input = input[1..Math.Min(input.Length, MaxBytes)];
        using (var fds = new FdSupply())
        {
            var (front, back) = UnixSockets.CreatePair();
            using (front)
            {
                front.SendTimeout = 2000;
                WriteFrames(front, input, fds);
                front.Shutdown(SocketShutdown.Send);
                using var storage = new RamStorage(64 * 1024);
                var device = new BlockDevice(storage, new BlockDeviceOptions { NumQueues = 2, QueueSize = 64 });
                using var session = new BackendSession(device, options, NullLogger.Instance);
                using (var race = fds.Race())
                    session.Serve(back); // owns and closes back
                if (Verbose)
                    foreach (var q in session.Queues)
                        Console.Error.WriteLine($"queue {q.Index}: {q.Counters.Requests} requests, {q.Counters.Errors} errors, {q.Counters.DirectBinds + q.Counters.CheckedBinds} binds, broken: {q.BrokenReason}");
            }
        }
        if (CheckLeaks) CheckForLeaks();
    }

    // Leak checks compare the state after this run with the state after the previous one: the fd
    // table is counted (readdir, cheap) every run and read in detail only when its size changed; the
    // memory map (expensive in a .NET process) every 32nd run and on every replay.
    private int _runs, _fdTotal = -1, _sessionKindFds;

    /// <summary>Check the memory map after every run, not every 32nd (replays and tests).</summary>
    public bool CheckMappingsEveryRun { get; set; }

    private void CheckForLeaks()
    {
        _runs++;
        int total = OpenFdTotal();
        if (total != _fdTotal)
        {
            int kinds = SessionKindFds().Count;
            if (_fdTotal >= 0 && kinds > _sessionKindFds)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                kinds = SessionKindFds().Count;
                if (kinds > _sessionKindFds)
                {
                    _fdTotal = -1; // report once, start afresh
                    throw new FuzzCheckFailedException($"{kinds - _sessionKindFds} fds leaked by the session; open now: {DescribeOpenFds()}");
                }
            }
            _fdTotal = OpenFdTotal();
            _sessionKindFds = kinds;
        }
        if (CheckMappingsEveryRun || _runs % 32 == 0)
        {
            int mappings = GuestMappingCount();
            if (mappings != 0) throw new FuzzCheckFailedException($"{mappings} mappings of the guest memfd left after the session");
        }
    }

    private static void WriteFrames(Socket front, ReadOnlySpan<byte> input, FdSupply supply)
    {
        Span<int> fds = stackalloc int[VhostUserLimits.MaxFds];
        for (int frames = 0; frames < MaxFrames && !input.IsEmpty; frames++)
        {
            byte spec = input[0];
            input = input[1..];
            if ((spec & 0x80) != 0)
            {
                if (input.Length < 3) return;
                long offset = BinaryPrimitives.ReadUInt16LittleEndian(input) * 16L;
                int length = Math.Min(input[2], input.Length - 3);
                supply.WriteGuest(offset, input.Slice(3, length));
                input = input[(3 + length)..];
                continue;
            }
            if (input.IsEmpty) return;
            int headerBytes = Math.Min(input.Length, VhostUserHeader.WireSize);
            uint request = 0, flags = 0, size = 0;
            if (headerBytes == VhostUserHeader.WireSize)
            {
                request = BinaryPrimitives.ReadUInt32LittleEndian(input);
                flags = BinaryPrimitives.ReadUInt32LittleEndian(input[4..]);
                size = BinaryPrimitives.ReadUInt32LittleEndian(input[8..]);
            }
            int total = headerBytes + (int)Math.Min(size, (uint)(input.Length - headerBytes));
            var message = input[..total];
            input = input[total..];

            var rule = MessageRules.For(VhostUserChannelKind.Main, request, (flags & (uint)VhostUserHeaderFlags.Reply) != 0);
            var payload = message[headerBytes..];
            int count = spec & 0xF;
            if (count > VhostUserLimits.MaxFds) count = AutoCount(rule.Fds, payload);
            int kind = (spec >> 4) & 0x7;
            for (int i = 0; i < count; i++) fds[i] = supply.Get(kind is 0 or 6 or 7 ? AutoKind((FrontEndRequest)request) : kind);
            try
            {
                UnixSockets.SendWithFds(front, message, fds[..count]);
            }
            catch (SocketException)
            {
                return; // the session hung up (it may: a broken stream ends the connection)
            }
        }
    }

    private static int AutoCount(FdRule rule, ReadOnlySpan<byte> payload) => rule switch
    {
        FdRule.ExactlyOne or FdRule.ZeroOrOne => 1,
        FdRule.OnePerRegion => (int)Math.Min(MemoryTable.PeekRegionCount(payload), VhostUserLimits.MaxFds),
        FdRule.PerVringFdBit => payload.Length >= 8 && (BinaryPrimitives.ReadUInt64LittleEndian(payload) & (1 << 8)) != 0 ? 0 : 1,
        _ => 0,
    };

    private static int AutoKind(FrontEndRequest request) => request switch
    {
        FrontEndRequest.SetVringKick or FrontEndRequest.SetVringCall or FrontEndRequest.SetVringErr or FrontEndRequest.SetLogFd => FdSupply.EventFdKind,
        FrontEndRequest.SetBackendReqFd or FrontEndRequest.GpuSetSocket => FdSupply.SocketKind,
        _ => FdSupply.GuestKind,
    };

    /// <summary>
    /// Open fds of the kinds a session receives (sockets, eventfds, memfds). The runtime opens other
    /// files as it loads assemblies, at any time; these kinds it does not open behind our back.
    /// </summary>
    private static List<string> SessionKindFds() =>
        Directory.GetFileSystemEntries("/proc/self/fd")
            .Select(f => { try { return $"{Path.GetFileName(f)}={File.ResolveLinkTarget(f, false)}"; } catch (IOException) { return ""; } })
            .Where(f => f.Contains("=socket:", StringComparison.Ordinal) || f.Contains("[eventfd]", StringComparison.Ordinal)
                || f.Contains("memfd:", StringComparison.Ordinal) && !f.Contains("doublemapper", StringComparison.Ordinal))
            .ToList();

    private static int OpenFdCount() => SessionKindFds().Count;

    /// <summary>
    /// How many fds are open, counted with readdir on /proc/self/fd. (Directory.GetFileSystemEntries
    /// stats and lstats every entry, which made the listing cost more than half a millisecond a run.)
    /// </summary>
    private static int OpenFdTotal()
    {
        nint dir = FdDirectory.OpenDir("/proc/self/fd");
        if (dir == 0) throw new IOException($"opendir /proc/self/fd failed (errno {Marshal.GetLastPInvokeError()})");
        int entries = 0;
        try
        {
            while (FdDirectory.ReadDir(dir) != 0) entries++;
        }
        finally
        {
            _ = FdDirectory.CloseDir(dir);
        }
        return entries - 3; // ".", ".." and the directory's own fd
    }

    private static string DescribeOpenFds() => string.Join(", ", SessionKindFds());

    private static int GuestMappingCount() => File.ReadLines("/proc/self/maps").Count(l => l.Contains(MemfdName, StringComparison.Ordinal));

    private static partial class FdDirectory
    {
        [LibraryImport("libc", EntryPoint = "opendir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial nint OpenDir(string path);

        [LibraryImport("libc", EntryPoint = "readdir")]
        public static partial nint ReadDir(nint dir);

        [LibraryImport("libc", EntryPoint = "closedir")]
        public static partial int CloseDir(nint dir);
    }

    /// <summary>The fds a run sends; all closed when the run ends (the session holds its own copies).</summary>
    private sealed class FdSupply : IDisposable
    {
        public const int GuestKind = 1, SmallKind = 2, ReadOnlyKind = 3, EventFdKind = 4, SocketKind = 5;
        private readonly List<IDisposable> _owned = [];
        private SafeFileHandle? _guest, _small, _readOnly;

        private SafeFileHandle Guest => _guest ??= Own(FileDescriptors.CreateMemfd(MemfdName, GuestFileSize));

        public int Get(int kind) => kind switch
        {
            SmallKind => Fd(_small ??= Own(FileDescriptors.CreateMemfd(MemfdName, FileDescriptors.PageSize))),
            ReadOnlyKind => Fd(_readOnly ??= Own(File.OpenHandle($"/proc/self/fd/{Fd(Guest)}", FileMode.Open, FileAccess.Read))),
            EventFdKind => Own(EventFd.Create()).Fd,
            SocketKind => SocketFd(),
            _ => Fd(Guest),
        };

        public void WriteGuest(long offset, ReadOnlySpan<byte> bytes)
        {
            RandomAccess.Write(Guest, bytes, offset);
            _writtenEnd = Math.Max(_writtenEnd, offset + bytes.Length);
        }

        private long _writtenEnd;

        /// <summary>
        /// Racing mode: a mapping of our own of the guest memfd, whose bytes the frames wrote the racer
        /// flips while the session serves; unmapped on dispose (before the leak check counts mappings).
        /// </summary>
        public IDisposable? Race()
        {
            if (!Racer.Enabled || _guest is null || _writtenEnd == 0) return null;
            var mapping = MemoryMapping.Map(_guest, 0, (ulong)GuestFileSize, writable: true);
            var image = mapping.GetSpan(0, (int)Math.Min(_writtenEnd, GuestFileSize));
            Racer.Arm(image, offset => mapping.Address + offset, (ulong)_writtenEnd);
            return new RaceScope(mapping);
        }

        private sealed class RaceScope(MemoryMapping mapping) : IDisposable
        {
            public void Dispose()
            {
                Racer.Disarm();
                mapping.Dispose();
            }
        }

        private int SocketFd()
        {
            var (ours, theirs) = UnixSockets.CreatePair();
            Own(ours);
            return (int)Own(theirs).Handle;
        }

        private T Own<T>(T d) where T : IDisposable
        {
            _owned.Add(d);
            return d;
        }

        private static int Fd(SafeFileHandle h) => (int)h.DangerousGetHandle();

        public void Dispose()
        {
            foreach (var d in _owned) d.Dispose();
        }
    }

    // ---- seeds ----

    /// <summary>One frame: spec byte (auto fds by default) and the encoded message.</summary>
    private static byte[] Frame(SeedMessages.Request r, byte spec = 0x0F) =>
        [spec, .. SeedMessages.Encode((uint)r.Id, r.Flags, r.Payload)];

    /// <summary>A guest memory write frame.</summary>
    private static byte[] MemoryWrite(ulong offset, ReadOnlySpan<byte> bytes)
    {
        var frames = new List<byte>();
        for (int at = 0; at < bytes.Length; at += 240)
        {
            var chunk = bytes.Slice(at, Math.Min(240, bytes.Length - at));
            ushort units = (ushort)((offset + (ulong)at) / 16);
            frames.AddRange([0x80, (byte)units, (byte)(units >> 8), (byte)chunk.Length, .. chunk]);
        }
        return [.. frames];
    }

    /// <summary>A block read request laid out at the seeds' ring addresses of queue 0.</summary>
    private static byte[] GuestWithOneRead()
    {
        const ushort next = VirtqDescriptor.FlagNext, write = VirtqDescriptor.FlagWrite;
        var image = new ImageBuilder(0x4000)
            .Descriptor((uint)SeedMessages.DescOffset, 0, 0x3800, 16, next, 1)
            .Descriptor((uint)SeedMessages.DescOffset, 1, 0x3a00, 512, next | write, 2)
            .Descriptor((uint)SeedMessages.DescOffset, 2, 0x3c00, 1, write, 0)
            .Avail((uint)SeedMessages.AvailOffset, SeedMessages.QueueSize, 0);
        return [
            .. MemoryWrite(SeedMessages.DescOffset, image.Image.AsSpan((int)SeedMessages.DescOffset, 48)),
            .. MemoryWrite(SeedMessages.AvailOffset, image.Image.AsSpan((int)SeedMessages.AvailOffset, 6)),
        ];
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        byte[] opening = [.. SeedMessages.Opening().SelectMany(r => Frame(r))];
        byte[] closing = [.. SeedMessages.Closing().SelectMany(r => Frame(r))];
        yield return ("opening", [0, .. opening]);
        yield return ("opening-checked", [1, .. opening]);
        yield return ("opening-read-closing", [0, .. GuestWithOneRead(), .. opening, .. closing]);
        yield return ("opening-two-queues", [0, .. SeedMessages.Opening(queues: 2).SelectMany(r => Frame(r))]);
        // After the opening, each other request once (so every handler has a seed that reaches it).
        foreach (var r in SeedMessages.FrontEndRequests().Skip(SeedMessages.Opening().Count()))
            yield return ($"opening-then-{r.Name}", [0, .. opening, .. Frame(r)]);
        // A reconnect with an inflight area (INFLIGHT_SHMFD): the area in the guest memfd at 1 MiB,
        // set before the rings start, recording head 0 of queue 0 as in flight.
        var setInflight = new SeedMessages.Request("set-inflight-fd", FrontEndRequest.SetInflightFd,
            SeedMessages.Bytes(new InflightDescription(SplitInflightTracker.RegionSize(SeedMessages.QueueSize), 1 << 20, 1, SeedMessages.QueueSize)), 1,
            VhostUserHeaderFlags.NeedReply);
        byte[] inflightArea = [.. MemoryWrite(1 << 20, [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, SeedMessages.QueueSize, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9])];
        yield return ("opening-with-inflight", [0, .. GuestWithOneRead(), .. inflightArea,
            .. SeedMessages.Opening().SelectMany(r => r.Id == FrontEndRequest.SetMemTable ? [.. Frame(r), .. Frame(setInflight)] : Frame(r)), .. closing]);
        // RING_PACKED negotiated: queue 0 becomes a packed ring (base 0x8000: wrap counter 1) with a read in it.
        const ushort avail = PackedRingLayout.FlagAvail, nextFlag = VirtqDescriptor.FlagNext, writeFlag = VirtqDescriptor.FlagWrite;
        // (A packed descriptor is {addr, len, id, flags}: the split writer's "flags, next" land on "id, flags".)
        var packedRead = new ImageBuilder(0x30)
            .Descriptor(0, 0, 0x3800, 16, 0, avail | nextFlag)
            .Descriptor(0, 1, 0x3a00, 512, 0, avail | nextFlag | writeFlag)
            .Descriptor(0, 2, 0x3c00, 1, 0, avail | writeFlag);
        yield return ("opening-packed-read-closing", [0, .. MemoryWrite(SeedMessages.DescOffset, packedRead.Image),
            .. SeedMessages.Opening(features: 0x1_3000_0000 | (1ul << 9) | (1ul << VirtioFeatureBits.RingPacked), vringBase: 0x8000).SelectMany(r => Frame(r)),
            .. closing]);
        // Requests before any memory or features: what an out-of-order front-end would send.
        yield return ("rings-before-memory", [0, .. SeedMessages.Opening().Where(r => r.Id != FrontEndRequest.SetMemTable).SelectMany(r => Frame(r))]);
        // A memory table whose region lies past the end of a one-page fd.
        yield return ("memory-past-fd", [0, .. Frame(SeedMessages.MemTable(), 0x21)]);
    }
}
