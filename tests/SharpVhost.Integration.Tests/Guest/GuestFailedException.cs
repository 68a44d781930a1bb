namespace SharpVhost.Integration.Tests.Guest;

/// <summary>A guest that hung, crashed or never ran its script; the message carries the console.</summary>
public sealed class GuestFailedException(string message) : Exception(message);
