namespace SharpVhost.MmCheck.Model;

/// <summary>
/// Hands out byte fields of the <see cref="StateVector"/> by name. Two bytes at the end are kept
/// back for the explorer's own bookkeeping (last actor and preemptions in preemption-bounded mode).
/// </summary>
public sealed class Layout
{
    public const int ModelFields = StateVector.Size - 2;
    public const int LastActorField = StateVector.Size - 2;
    public const int PreemptionsField = StateVector.Size - 1;

    private readonly List<string> _names = [];

    public int Count => _names.Count;

    public string NameOf(int field) => field < _names.Count ? _names[field] : "?";

    public int Add(string name)
    {
        if (_names.Count >= ModelFields)
            throw new InvalidOperationException($"model needs more than {ModelFields} state fields (adding '{name}'): use fewer actors");
        _names.Add(name);
        return _names.Count - 1;
    }
}
