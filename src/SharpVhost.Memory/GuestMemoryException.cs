namespace SharpVhost.Memory;

/// <summary>An address, length or permission from an untrusted peer that guest memory cannot satisfy.</summary>
public sealed class GuestMemoryException(string message) : Exception(message);
