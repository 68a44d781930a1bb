namespace SharpVhost.Fuzz;

/// <summary>
/// One fuzz target: a parser (or a chain of them) that hostile input can reach. <see cref="Run"/>
/// must return normally for every input; anything it lets escape is a finding. The expected
/// rejections (a protocol error, a broken queue) are caught inside the target. Oracles that go
/// beyond "no exception" (round trips, two accessors agreeing, no fd leaked) throw
/// <see cref="FuzzCheckFailedException"/>.
/// </summary>
public interface IFuzzTarget
{
    /// <summary>The name used on the command line and as the corpus folder.</summary>
    string Name { get; }

    /// <summary>One line for <c>SharpVhost.Fuzz list</c>.</summary>
    string Description { get; }

    /// <summary>Runs one input.</summary>
    void Run(ReadOnlySpan<byte> input);

    /// <summary>Small valid inputs to start from (file name, bytes).</summary>
    IEnumerable<(string Name, byte[] Data)> Seeds();
}

/// <summary>An oracle saw something that must never happen; the fuzzer records it as a crash.</summary>
public sealed class FuzzCheckFailedException(string message) : Exception(message);

/// <summary>Every target, by name.</summary>
public static class FuzzTargets
{
    // Factories, not instances: under afl-fuzz no instrumented code may run before Fuzzer.Run has
    // set up the coverage map, so the persistent loop creates its target inside the loop.
    private static readonly Dictionary<string, Func<IFuzzTarget>> Factories = new()
    {
        ["codec"] = () => new CodecTarget(),
        ["session"] = () => new SessionTarget(),
        ["splitqueue"] = () => new SplitQueueTarget(),
        ["packedqueue"] = () => new PackedQueueTarget(),
        ["blk"] = () => new BlockTarget(),
        ["net"] = () => new NetTarget(),
    };

    public static IEnumerable<string> Names => Factories.Keys;

    public static bool Exists(string name) => Factories.ContainsKey(name);

    public static IFuzzTarget Create(string name) =>
        Factories.TryGetValue(name, out var create) ? create()
            : throw new ArgumentException($"unknown fuzz target '{name}' (known: {string.Join(", ", Names)})");

    public static IEnumerable<IFuzzTarget> All => Names.Select(Create);

    /// <summary>Every file under <paramref name="path"/> (or the file itself), in a stable order.</summary>
    public static IEnumerable<string> InputFiles(string path) =>
        Directory.Exists(path)
            ? Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                .Where(f => !Path.GetFileName(f).StartsWith('.') && !f.EndsWith("README.txt", StringComparison.Ordinal))
                .Order(StringComparer.Ordinal)
            : File.Exists(path) ? [path] : [];
}
