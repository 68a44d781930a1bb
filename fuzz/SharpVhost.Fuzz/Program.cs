using SharpFuzz;
using SharpVhost.Fuzz;

// SharpVhost.Fuzz list
// SharpVhost.Fuzz seeds <corpus-root>              writes every target's seeds to <corpus-root>/<target>/
// SharpVhost.Fuzz <target> replay <file-or-dir>... runs inputs once each, in-process; exit 1 on a finding
// SharpVhost.Fuzz record <socket> <file> <seconds> records a real front-end's messages as a session input
// SharpVhost.Fuzz <target>                         the afl-fuzz persistent loop (also runs stdin once outside afl)
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: SharpVhost.Fuzz list | seeds <corpus-root> | <target> [replay <file-or-dir>...]");
    return 2;
}
if (args[0] == "list")
{
    foreach (var t in FuzzTargets.All) Console.WriteLine($"{t.Name,-12} {t.Description}");
    return 0;
}
if (args[0] == "record" && args.Length > 3)
    return TrafficRecorder.Run(args[1], args[2], int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
if (args[0] == "seeds")
{
    string root = args.Length > 1 ? args[1] : "corpus";
    foreach (var t in FuzzTargets.All)
    {
        string dir = Path.Combine(root, t.Name);
        Directory.CreateDirectory(dir);
        var names = new HashSet<string>();
        foreach (var (name, data) in t.Seeds())
        {
            if (!names.Add(name)) throw new InvalidOperationException($"{t.Name} has two seeds named {name}");
            t.Run(data); // a seed that fails its own target is a bug in the seed or in the code
            File.WriteAllBytes(Path.Combine(dir, name), data);
        }
        Console.WriteLine($"{t.Name}: {Directory.GetFiles(dir).Length} files in {dir}");
    }
    return 0;
}

if (!FuzzTargets.Exists(args[0]))
{
    Console.Error.WriteLine($"unknown target '{args[0]}'; known: {string.Join(", ", FuzzTargets.Names)}");
    return 2;
}
if (args.Length > 1 && args[1] == "replay")
{
    var target = FuzzTargets.Create(args[0]);
    int failures = 0, count = 0;
    foreach (string path in args.Skip(2))
    {
        foreach (string file in FuzzTargets.InputFiles(path))
        {
            count++;
            try { target.Run(File.ReadAllBytes(file)); }
            catch (Exception e)
            {
                failures++;
                Console.Error.WriteLine($"{file}: {e}");
            }
        }
    }
    Console.WriteLine($"{target.Name}: {count} inputs, {failures} failed");
    return failures == 0 ? 0 : 1;
}

if (args.Length > 3 && args[1] == "bench")
{
    // SharpVhost.Fuzz <target> bench <file> <runs>: time per run, uninstrumented (to find slow harness parts).
    var target = FuzzTargets.Create(args[0]);
    var data = File.ReadAllBytes(args[2]);
    int runs = int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture);
    var watch = System.Diagnostics.Stopwatch.StartNew();
    for (int i = 0; i < runs; i++) target.Run(data);
    Console.WriteLine($"{target.Name}: {watch.Elapsed.TotalMicroseconds / runs:F1} us per run");
    return 0;
}

// The persistent loop: afl-fuzz writes each input to our stdin (a file it rewrites in place) and
// signals on a pipe; an exception escaping Run is reported as a crash, a run past afl's -t as a hang.
// The input is read with pread at offset 0, not from the stream SharpFuzz passes: SharpFuzz copies
// that stream for its first (reported) run before afl has written the first input, so on a busy
// machine the first seed ran as an empty input and afl aborted with "No instrumentation detected".
// By the time the callback runs for a reported execution afl has written the input, so the file
// holds it whatever the file position. A pipe on stdin (a run outside afl) is read as a stream.
var buffer = new byte[1 << 20];
IFuzzTarget? fuzzed = null;
using var stdin = new Microsoft.Win32.SafeHandles.SafeFileHandle(0, ownsHandle: false);
bool stdinIsFile = IsSeekable(stdin);
Fuzzer.Run(stream =>
{
    fuzzed ??= FuzzTargets.Create(args[0]);
    int length = 0, n;
    if (stdinIsFile)
        while (length < buffer.Length && (n = RandomAccess.Read(stdin, buffer.AsSpan(length), length)) > 0) length += n;
    else
        while (length < buffer.Length && (n = stream.Read(buffer, length, buffer.Length - length)) > 0) length += n;
    fuzzed.Run(buffer.AsSpan(0, length));
});
return 0;

static bool IsSeekable(Microsoft.Win32.SafeHandles.SafeFileHandle handle)
{
    try { RandomAccess.Read(handle, Span<byte>.Empty, 0); return true; }
    catch (NotSupportedException) { return false; }
}
