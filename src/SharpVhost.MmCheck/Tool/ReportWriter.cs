using System.Text;
using System.Text.Json;
using SharpVhost.MmCheck.Explorer;
using SharpVhost.MmCheck.Model;

namespace SharpVhost.MmCheck.Tool;

/// <summary>Renders a check report as text (a per-CPU interleaving) or as JSON.</summary>
public static class ReportWriter
{
    public static string Text(CheckReport r)
    {
        var sb = new StringBuilder();
        var s = r.Search;
        sb.AppendLine($"scenario {r.Scenario.Name}: {r.Scenario.Summary}");
        sb.AppendLine($"search: {s.Mode}, {s.States:N0} states, {s.Transitions:N0} transitions, max depth {s.MaxDepth}, {s.Elapsed.TotalSeconds:F2} s ({s.StatesPerSecond:N0} states/s){(s.Verdict == Verdict.Violation ? ", stopped at the first violation" : s.BoundHit ? ", bound reached" : ", complete")}");
        if (r.Verdict == Verdict.Safe)
        {
            sb.AppendLine(s.BoundHit
                ? $"SAFE within the bound: no rule broken in paths of at most {r.Scenario.MaxSteps} steps" + (r.Scenario.MaxPreemptions is int p ? $" and {p} preemptions" : "")
                : "SAFE: no rule broken in any interleaving (state space exhausted)");
            return sb.ToString();
        }
        var c = r.Counterexample;
        sb.AppendLine($"VIOLATION {c.Rule?.Name()}: {c.Detail}");
        sb.AppendLine($"{(ReferenceEquals(c, r.Shortest) ? "shortest" : "found")} trace, {c.Trace.Count} steps (one column per CPU):");
        AppendTrace(sb, c.Trace);
        return sb.ToString();
    }

    public static void AppendTrace(StringBuilder sb, IReadOnlyList<TraceStep> trace)
    {
        var actors = trace.Select(t => (t.Actor, t.ActorName)).Distinct().OrderBy(a => a.Actor).ToList();
        int width = Math.Max(10, actors.Max(a => a.ActorName.Length) + 2);
        sb.Append("  step ");
        foreach (var a in actors) sb.Append($"cpu{a.Actor} {a.ActorName}".PadRight(width + 5));
        sb.AppendLine();
        for (int i = 0; i < trace.Count; i++)
        {
            var t = trace[i];
            int lane = actors.FindIndex(a => a.Actor == t.Actor);
            sb.Append($"  {i + 1,4} ");
            sb.Append(new string(' ', lane * (width + 5)));
            sb.Append("| ").AppendLine(StripActor(t));
        }
    }

    /// <summary>The label without its "actor: " prefix, which the column already says.</summary>
    public static string StripActor(TraceStep t) =>
        t.Label.StartsWith(t.ActorName + ": ", StringComparison.Ordinal) ? t.Label[(t.ActorName.Length + 2)..] : t.Label;

    public static string Json(CheckReport r)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            var s = r.Search;
            var c = r.Counterexample;
            w.WriteStartObject();
            w.WriteString("scenario", r.Scenario.Name);
            w.WriteString("verdict", r.Verdict == Verdict.Safe ? "safe" : "violation");
            if (r.Verdict == Verdict.Violation)
            {
                w.WriteString("rule", c.Rule?.Name());
                w.WriteString("detail", c.Detail);
            }
            else w.WriteNull("rule");
            w.WriteNumber("states", s.States);
            w.WriteNumber("transitions", s.Transitions);
            w.WriteNumber("seconds", Math.Round(s.Elapsed.TotalSeconds, 3));
            w.WriteNumber("states_per_second", Math.Round(s.StatesPerSecond));
            w.WriteBoolean("bound_reached", s.BoundHit);
            w.WriteString("mode", s.Mode);
            w.WriteStartArray("trace");
            if (r.Verdict == Verdict.Violation)
            {
                for (int i = 0; i < c.Trace.Count; i++)
                {
                    var t = c.Trace[i];
                    w.WriteStartObject();
                    w.WriteNumber("step", i + 1);
                    w.WriteNumber("cpu", t.Actor);
                    w.WriteString("actor", t.ActorName);
                    w.WriteString("op", StripActor(t));
                    w.WriteEndObject();
                }
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
