using System.Text.Json;
using System.Text.Json.Serialization;

namespace SharpVhost.Bench.Report;

/// <summary>The report as JSON (camelCase, enums as strings, NaN allowed for ratios that have no peer value).</summary>
public static class BenchJson
{
    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public static string Serialize(BenchReport report) => JsonSerializer.Serialize(report, Options);

    public static void Write(BenchReport report, string path) => File.WriteAllText(path, Serialize(report) + "\n");
}
