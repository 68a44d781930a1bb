namespace SharpVhost.Virtio;

/// <summary>
/// The driver broke the ring's rules (an index out of range, a loop, memory outside the guest...).
/// The queue that threw is marked broken; nothing else is affected.
/// </summary>
public sealed class VirtqueueException(string message) : Exception(message);
