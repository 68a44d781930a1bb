using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Scenarios;

/// <summary>A scenario file that cannot be read; the message names the line.</summary>
public sealed class ScenarioException(string message) : Exception(message);

/// <summary>
/// Reads scenario files: one <c>key: value</c> a line, <c>#</c> starts a comment. Keys: name, strategy,
/// page, rounds, actors (comma-separated, <c>writeback x2</c> for passes), fixes, guard (on|off),
/// check (all or rule names), max-steps, max-preemptions, expect (safe | violation RULE).
/// </summary>
public static class ScenarioParser
{
    public static Scenario ParseFile(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ScenarioException($"{path}: cannot read: {e.Message}");
        }
        return Parse(text, path);
    }

    public static Scenario Parse(string text, string source = "scenario")
    {
        var s = new Scenario { Name = Path.GetFileNameWithoutExtension(source) };
        var seen = new HashSet<string>();
        var lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            line = line.Trim();
            if (line.Length == 0) continue;
            string where = $"{source}:{i + 1}";
            int colon = line.IndexOf(':');
            if (colon <= 0) throw new ScenarioException($"{where}: expected 'key: value', got '{line}'");
            string key = line[..colon].Trim().ToLowerInvariant();
            string value = line[(colon + 1)..].Trim();
            if (!seen.Add(key)) throw new ScenarioException($"{where}: '{key}' given twice");
            s = Apply(s, key, value, where);
        }
        if (!seen.Contains("strategy")) throw new ScenarioException($"{source}:{lines.Length}: missing 'strategy:' line");
        return s;
    }

    private static Scenario Apply(Scenario s, string key, string value, string where)
    {
        switch (key)
        {
            case "name":
                return s with { Name = value };
            case "strategy":
            {
                var all = Scenario.StrategyNames.Concat(Scenario.BackendStrategyNames).ToList();
                var m = all.Where(n => n.Name == value).ToList();
                if (m.Count == 0) throw new ScenarioException($"{where}: unknown strategy '{value}' (one of {string.Join(", ", all.Select(n => n.Name))})");
                return s with { Strategy = m[0].Value };
            }
            case "page":
                if (!PageKindNames.TryParse(value, out var kind) || int.TryParse(value, out _))
                    throw new ScenarioException($"{where}: unknown page kind '{value}' (anon, tmpfs, hugetlbfs, ext4)");
                return s with { Page = kind };
            case "rounds":
                return s with { Rounds = Int(value, where, 1, 8) };
            case "max-steps":
                return s with { MaxSteps = Int(value, where, 1, 100000) };
            case "max-preemptions":
                return s with { MaxPreemptions = value == "none" ? null : Int(value, where, 0, 100) };
            case "guard":
                return value switch
                {
                    "on" => s with { Guard = true },
                    "off" => s with { Guard = false },
                    _ => throw new ScenarioException($"{where}: guard must be 'on' or 'off'"),
                };
            case "actors":
            {
                var ops = new List<OperationSpec>();
                foreach (var raw in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    var words = raw.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    var m = Scenario.OperationNames.Where(n => n.Name == words[0]).ToList();
                    if (m.Count == 0) throw new ScenarioException($"{where}: unknown actor '{words[0]}' (one of {string.Join(", ", Scenario.OperationNames.Select(n => n.Name))})");
                    int passes = 1;
                    if (words.Length == 2 && words[1].StartsWith('x') && m[0].Value is OperationKind.Writeback or OperationKind.Speculative)
                        passes = Int(words[1][1..], where, 1, 8);
                    else if (words.Length != 1)
                        throw new ScenarioException($"{where}: cannot read actor '{raw}' (only 'writeback xN' and 'speculative xN' take a count of passes)");
                    ops.Add(new OperationSpec(m[0].Value, passes));
                }
                if (ops.Count > 5) throw new ScenarioException($"{where}: at most 5 actors besides the worker");
                return s with { Operations = ops };
            }
            case "fixes":
            {
                var f = Fixes.None;
                foreach (var name in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    if (name == "none") continue;
                    var m = FixNames.All.Where(n => n.Name == name).ToList();
                    if (m.Count == 0) throw new ScenarioException($"{where}: unknown fix '{name}' (one of {string.Join(", ", FixNames.All.Select(n => n.Name))})");
                    f |= m[0].Fix;
                }
                return s with { Fixes = f };
            }
            case "check":
            {
                if (value == "all") return s with { Checks = Enum.GetValues<Rule>().ToHashSet() };
                var set = new HashSet<Rule>();
                foreach (var name in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    if (!RuleNames.TryParse(name, out var r))
                        throw new ScenarioException($"{where}: unknown rule '{name}' (one of {string.Join(", ", RuleNames.All)})");
                    set.Add(r);
                }
                return s with { Checks = set };
            }
            case "expect":
            {
                var words = value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                bool ok = (words.Length == 1 && words[0] == "safe")
                    || (words.Length == 2 && words[0] == "violation" && RuleNames.TryParse(words[1], out _));
                if (!ok) throw new ScenarioException($"{where}: expect must be 'safe' or 'violation RULE'");
                return s with { Expect = value };
            }
            default:
                throw new ScenarioException($"{where}: unknown key '{key}'");
        }
    }

    private static int Int(string v, string where, int min, int max)
    {
        if (!int.TryParse(v, out int n) || n < min || n > max)
            throw new ScenarioException($"{where}: expected a number from {min} to {max}, got '{v}'");
        return n;
    }
}
