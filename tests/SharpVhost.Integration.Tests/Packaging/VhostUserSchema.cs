using System.Text.Json;

namespace SharpVhost.Integration.Tests.Packaging;

/// <summary>
/// The constraints of QEMU's docs/interop/vhost-user.json (QEMU 7.2), encoded here because Debian
/// ships no copy of the schema (qemu-system-common has only the descriptors under
/// /usr/share/qemu/vhost-user). A QAPI struct admits exactly its members: a mandatory one must be
/// there, an optional one ('*tags') may be, nothing else may. Each method returns the violations.
/// </summary>
public static class VhostUserSchema
{
    /// <summary>@VHostUserBackendType.</summary>
    public static readonly string[] BackendTypes =
        ["9p", "balloon", "block", "caif", "console", "crypto", "gpu", "input", "net", "rng", "rpmsg", "rproc-serial", "scsi", "vsock", "fs"];

    /// <summary>@VHostUserBackendCapabilities' branches: the types with a 'features' list, and its enum.</summary>
    public static readonly Dictionary<string, string[]> FeatureEnums = new()
    {
        ["block"] = ["read-only", "blk-file"],   // @VHostUserBackendBlockFeature
        ["input"] = ["evdev-path", "no-grab"],   // @VHostUserBackendInputFeature
        ["gpu"] = ["render-node", "virgl"],      // @VHostUserBackendGPUFeature
    };

    /// <summary>@VhostUserBackend: { 'description': 'str', 'type': 'VHostUserBackendType', 'binary': 'str', '*tags': ['str'] }.</summary>
    public static List<string> CheckDescriptor(JsonElement root)
    {
        var errors = new List<string>();
        if (root.ValueKind != JsonValueKind.Object) return ["the root must be an object"];
        RequireString(root, "description", errors);
        if (RequireString(root, "type", errors) is { } type && !BackendTypes.Contains(type)) errors.Add($"type '{type}' is not a VHostUserBackendType");
        if (RequireString(root, "binary", errors) is { } binary && !Path.IsPathRooted(binary)) errors.Add($"binary '{binary}' is not an absolute path");
        if (root.TryGetProperty("tags", out var tags) && (tags.ValueKind != JsonValueKind.Array || tags.EnumerateArray().Any(t => t.ValueKind != JsonValueKind.String)))
            errors.Add("tags must be a list of strings");
        errors.AddRange(Unexpected(root, "description", "type", "binary", "tags"));
        return errors;
    }

    /// <summary>@VHostUserBackendCapabilities: a union on 'type'; a branch's members, or none for types without one.</summary>
    public static List<string> CheckCapabilities(JsonElement root)
    {
        var errors = new List<string>();
        if (root.ValueKind != JsonValueKind.Object) return ["the root must be an object"];
        var type = RequireString(root, "type", errors);
        if (type is null) return errors;
        if (!BackendTypes.Contains(type)) errors.Add($"type '{type}' is not a VHostUserBackendType");
        if (FeatureEnums.TryGetValue(type, out var allowed))
        {
            if (!root.TryGetProperty("features", out var features) || features.ValueKind != JsonValueKind.Array)
                errors.Add($"a '{type}' backend must list 'features'");
            else
                foreach (var f in features.EnumerateArray())
                    if (f.ValueKind != JsonValueKind.String || !allowed.Contains(f.GetString()))
                        errors.Add($"feature {f} is not one of {string.Join(", ", allowed)}");
            errors.AddRange(Unexpected(root, "type", "features"));
        }
        else errors.AddRange(Unexpected(root, "type"));
        return errors;
    }

    private static string? RequireString(JsonElement root, string name, List<string> errors)
    {
        if (root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String) return value.GetString();
        errors.Add($"'{name}' (a string) is missing");
        return null;
    }

    private static IEnumerable<string> Unexpected(JsonElement root, params string[] members) =>
        root.EnumerateObject().Where(p => !members.Contains(p.Name)).Select(p => $"'{p.Name}' is not a member");
}
