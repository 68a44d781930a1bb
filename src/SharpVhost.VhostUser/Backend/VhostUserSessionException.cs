namespace SharpVhost.VhostUser.Backend;

/// <summary>A frontend request the session refuses (bad index, wrong order, unsupported feature...).</summary>
public sealed class VhostUserSessionException(string message) : Exception(message);
