using System.Security.Cryptography;
using System.Text;

namespace SharpVhost.Integration.Tests.Block;

/// <summary>
/// The data the guest block test (scripts/guest/blk-test.sh) writes, regenerated on the host
/// from the same seed so the image file can be checked byte for byte. Must stay in step with
/// the script's case table and its awk generator.
/// </summary>
public static class BlockPatterns
{
    public const long DiskBytes = 32L << 20;

    /// <summary>One write: where, how much, and whether the guest used O_DIRECT or the page cache.</summary>
    public sealed record Case(int Index, long Offset, int Length, bool Direct);

    public static readonly IReadOnlyList<Case> Cases =
    [
        new(0, 0, 4096, Direct: true),
        new(1, 67072, 512, Direct: true),
        new(2, 1 << 20, 65536, Direct: true),
        new(3, 2 << 20, 1 << 20, Direct: true),
        new(4, 4198400, 12288, Direct: false),
        new(5, 6291556, 3000, Direct: false),
        new(6, 8389120, 307200, Direct: false),
        new(7, DiskBytes - 8192, 8192, Direct: true),
    ];

    private const string Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/";

    /// <summary>
    /// Per 512-byte sector k: "sv SSSSSSSS CCCC KKKKKKKK " + 485 chars of a window into a
    /// 1024-char MINSTD string (seeded by seed and case) + "\n"; cut to the case's length.
    /// </summary>
    public static byte[] Generate(int seed, Case c)
    {
        long state = (seed * 1000L + c.Index) % 2147483646 + 1;
        var pool = new char[1024];
        for (var i = 0; i < pool.Length; i++)
        {
            state = state * 48271 % 2147483647;
            pool[i] = Alphabet[(int)(state % 64)];
        }
        var text = new StringBuilder();
        for (var k = 0; k < (c.Length + 511) / 512; k++)
        {
            var window = (k * 131 + c.Index * 7) % 512;
            text.Append($"sv {seed:D8} {c.Index:D4} {k:D8} ").Append(pool, window, 485).Append('\n');
        }
        return Encoding.ASCII.GetBytes(text.ToString())[..c.Length];
    }

    public static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>The whole image after the guest wrote every case into a zeroed disk.</summary>
    public static byte[] ExpectedImage(int seed)
    {
        var image = new byte[DiskBytes];
        foreach (var c in Cases) Generate(seed, c).CopyTo(image, c.Offset);
        return image;
    }
}
