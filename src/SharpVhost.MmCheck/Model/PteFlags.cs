namespace SharpVhost.MmCheck.Model;

/// <summary>Flags of the one modelled page-table entry.</summary>
[Flags]
public enum PteFlags : byte
{
    None = 0,
    Writable = 1,
    Dirty = 2,
    /// <summary>Not present: a swap or migration entry.</summary>
    SwapEntry = 4,
}
