namespace SharpVhost.Devices.Block.Nbd;

/// <summary>What the server said about the export in the handshake.</summary>
public sealed record NbdExport(long Size, ushort TransmissionFlags, uint MinimumBlockSize, uint PreferredBlockSize, uint MaximumPayload, bool StructuredReplies)
{
    public bool ReadOnly => (TransmissionFlags & NbdProtocol.TxReadOnly) != 0;
    public bool CanFlush => (TransmissionFlags & NbdProtocol.TxSendFlush) != 0;
    public bool CanFua => (TransmissionFlags & NbdProtocol.TxSendFua) != 0;
    public bool CanTrim => (TransmissionFlags & NbdProtocol.TxSendTrim) != 0;
    public bool CanWriteZeroes => (TransmissionFlags & NbdProtocol.TxSendWriteZeroes) != 0;
    public bool CanMultiConn => (TransmissionFlags & NbdProtocol.TxCanMultiConn) != 0;

    public string Describe() =>
        $"{Size} bytes{(ReadOnly ? ", read-only" : "")}, block {MinimumBlockSize}/{PreferredBlockSize}/{MaximumPayload}"
        + $"{(StructuredReplies ? ", structured replies" : "")}{(CanFlush ? ", flush" : "")}{(CanFua ? ", fua" : "")}"
        + $"{(CanTrim ? ", trim" : "")}{(CanWriteZeroes ? ", write-zeroes" : "")}{(CanMultiConn ? ", multi-conn" : "")}";
}
