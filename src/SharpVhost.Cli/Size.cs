using System.Globalization;

namespace SharpVhost.Cli;

/// <summary>Parses sizes such as 4096, 64K, 256M, 1G (binary units).</summary>
internal static class Size
{
    public static long Parse(string text)
    {
        text = text.Trim();
        long unit = 1;
        if (text.Length > 0 && char.IsLetter(text[^1]))
        {
            unit = char.ToUpperInvariant(text[^1]) switch
            {
                'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, 'T' => 1L << 40,
                _ => throw new FormatException($"unknown size unit in '{text}'"),
            };
            text = text[..^1];
        }
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value) || value <= 0 || value > long.MaxValue / unit)
            throw new FormatException($"'{text}' is not a positive size");
        return value * unit;
    }
}
