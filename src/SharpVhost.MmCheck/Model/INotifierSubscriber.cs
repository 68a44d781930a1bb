namespace SharpVhost.MmCheck.Model;

/// <summary>An MMU-notifier subscriber (a strategy that registers one).</summary>
public interface INotifierSubscriber
{
    /// <summary>Step <paramref name="cbPc"/> of the start callback; sets <c>caller.Sub</c> to cbPc+2 to continue at cbPc+1.</summary>
    SubResult OnInvalidateStart(Exec x, ActorSlots caller, int cbPc, bool blockable);

    /// <summary>The whole end callback as one step; returns its label or "".</summary>
    string OnInvalidateEnd(Exec x);
}
