namespace SharpVhost.MmCheck.Model;

/// <summary>Outcome of one step of a multi-step sub-path (a fault, a notifier callback).</summary>
public enum SubResult { Blocked, Running, Done, Failed }
