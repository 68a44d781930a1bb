using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace SharpVhost.Devices.Block.Nbd;

/// <summary>
/// Opens connections to one export and checks that every one after the first sees the same disk (a
/// reconnect to an export that changed size or became read-only is refused, not served).
/// </summary>
public sealed class NbdConnector(NbdUri uri, NbdClientOptions options, ILogger logger)
{
    public NbdUri Uri => uri;
    public NbdClientOptions Options => options;
    public ILogger Logger => logger;
    public NbdExport? Export { get; private set; }

    internal Socket Connect(out NbdExport export)
    {
        var socket = NbdHandshake.Connect(uri, options.ConnectTimeout, out export);
        var first = Export;
        if (first is null) Export = export;
        else if (first.Size != export.Size || first.ReadOnly != export.ReadOnly)
        {
            socket.Dispose();
            throw new IOException($"the export changed across a reconnect (was {first.Describe()}, now {export.Describe()})");
        }
        socket.Blocking = false; // transmission phase: poll-bounded non-blocking transfers (StreamSocketIo)
        return socket;
    }
}
