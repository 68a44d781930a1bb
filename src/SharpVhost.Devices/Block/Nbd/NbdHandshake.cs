using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace SharpVhost.Devices.Block.Nbd;

/// <summary>
/// The client side of the fixed newstyle handshake: structured replies asked for (used when the server
/// acknowledges them), then NBD_OPT_GO with a request for the block size constraints, falling back to
/// NBD_OPT_EXPORT_NAME for servers that do not know NBD_OPT_GO. Every read has a deadline; every reply's
/// length is bounded before anything is allocated for it.
/// </summary>
internal static class NbdHandshake
{
    private const int MaxOptionReply = 64 * 1024;

    /// <summary>Connects and negotiates; the returned socket is in transmission phase, still blocking.</summary>
    public static Socket Connect(NbdUri uri, TimeSpan timeout, out NbdExport export)
    {
        var socket = uri.IsUnix ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            using (var cts = new CancellationTokenSource(timeout))
            {
                try { socket.ConnectAsync(uri.EndPoint, cts.Token).AsTask().GetAwaiter().GetResult(); }
                catch (OperationCanceledException) { throw new IOException($"connecting to {uri} timed out"); }
            }
            if (!uri.IsUnix) socket.NoDelay = true;
            socket.Blocking = true;
            socket.ReceiveTimeout = socket.SendTimeout = (int)timeout.TotalMilliseconds;
            export = Negotiate(socket, uri.ExportName);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"NBD server {uri}: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    internal static NbdExport Negotiate(Socket socket, string exportName)
    {
        Span<byte> greeting = stackalloc byte[18];
        ReceiveExactly(socket, greeting[..16]);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != NbdProtocol.InitMagic) throw new IOException("not an NBD server (no NBDMAGIC)");
        ulong second = BinaryPrimitives.ReadUInt64BigEndian(greeting[8..]);
        if (second == NbdProtocol.OldstyleMagic) throw new IOException("the server speaks the oldstyle handshake only (unsupported)");
        if (second != NbdProtocol.OptionMagic) throw new IOException($"bad handshake magic 0x{second:x16}");
        ReceiveExactly(socket, greeting[16..]);
        ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting[16..]);
        if ((serverFlags & NbdProtocol.FlagFixedNewstyle) == 0) throw new IOException("the server does not speak fixed newstyle");
        bool noZeroes = (serverFlags & NbdProtocol.FlagNoZeroes) != 0;
        Span<byte> clientFlags = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, NbdProtocol.ClientFixedNewstyle | (noZeroes ? NbdProtocol.ClientNoZeroes : 0));
        socket.Send(clientFlags);

        SendOption(socket, NbdProtocol.OptStructuredReply, []);
        bool structured = false;
        while (true)
        {
            var reply = ReceiveOptionReply(socket, NbdProtocol.OptStructuredReply, out uint type);
            if (type == NbdProtocol.RepAck) { structured = true; break; }
            if ((type & NbdProtocol.RepErrorBit) != 0) break; // not offered: simple replies only
            _ = reply; // anything else before the ACK is ignored
        }

        byte[] name = Encoding.UTF8.GetBytes(exportName);
        if (name.Length > NbdProtocol.MaxString) throw new IOException("export name longer than 4096 bytes");
        var go = new byte[4 + name.Length + 2 + 2];
        BinaryPrimitives.WriteUInt32BigEndian(go, (uint)name.Length);
        name.CopyTo(go, 4);
        BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(4 + name.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(6 + name.Length), NbdProtocol.InfoBlockSize);
        SendOption(socket, NbdProtocol.OptGo, go);
        long size = -1;
        ushort flags = 0;
        uint min = 1, preferred = 4096, max = NbdProtocol.DefaultMaxPayload;
        while (true)
        {
            var reply = ReceiveOptionReply(socket, NbdProtocol.OptGo, out uint type);
            if (type == NbdProtocol.RepAck) break;
            if (type == NbdProtocol.RepErrUnsupported) return ExportName(socket, name, noZeroes, structured);
            if ((type & NbdProtocol.RepErrorBit) != 0)
                throw new IOException($"the server refused export '{exportName}' (error 0x{type:x}{(reply.Length > 0 ? ": " + Encoding.UTF8.GetString(reply) : "")})");
            if (type != NbdProtocol.RepInfo || reply.Length < 2) continue;
            ushort info = BinaryPrimitives.ReadUInt16BigEndian(reply);
            if (info == NbdProtocol.InfoExport && reply.Length >= 12)
            {
                size = (long)BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(2));
                flags = BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(10));
            }
            else if (info == NbdProtocol.InfoBlockSize && reply.Length >= 14)
            {
                min = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(2));
                preferred = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(6));
                max = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(10));
            }
        }
        if (size < 0) throw new IOException("the server sent no NBD_INFO_EXPORT before its ACK");
        return Checked(new NbdExport(size, flags, min, preferred, max, structured));
    }

    private static NbdExport ExportName(Socket socket, byte[] name, bool noZeroes, bool structured)
    {
        SendOption(socket, NbdProtocol.OptExportName, name);
        Span<byte> reply = stackalloc byte[10 + 124];
        ReceiveExactly(socket, noZeroes ? reply[..10] : reply);
        return Checked(new NbdExport((long)BinaryPrimitives.ReadUInt64BigEndian(reply), BinaryPrimitives.ReadUInt16BigEndian(reply[8..]),
            1, 4096, NbdProtocol.DefaultMaxPayload, structured));
    }

    private static NbdExport Checked(NbdExport export)
    {
        if (export.Size < 0) throw new IOException($"export size {export.Size} is out of range");
        if (export.MinimumBlockSize == 0 || export.MinimumBlockSize > 64 * 1024 || !uint.IsPow2(export.MinimumBlockSize))
            throw new IOException($"minimum block size {export.MinimumBlockSize} is not a power of two up to 64 KiB");
        if (export.MaximumPayload < export.MinimumBlockSize) throw new IOException($"maximum payload {export.MaximumPayload} is below the minimum block size");
        // The payload limit is also what we will read per reply: a hostile server cannot make it larger than the protocol's.
        return export.MaximumPayload > NbdProtocol.DefaultMaxPayload ? export with { MaximumPayload = NbdProtocol.DefaultMaxPayload } : export;
    }

    private static void SendOption(Socket socket, uint option, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(header, NbdProtocol.OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header[8..], option);
        BinaryPrimitives.WriteUInt32BigEndian(header[12..], (uint)data.Length);
        socket.Send(header);
        if (!data.IsEmpty) socket.Send(data);
    }

    private static byte[] ReceiveOptionReply(Socket socket, uint option, out uint type)
    {
        Span<byte> header = stackalloc byte[20];
        ReceiveExactly(socket, header);
        if (BinaryPrimitives.ReadUInt64BigEndian(header) != NbdProtocol.OptionReplyMagic) throw new IOException("bad option reply magic");
        uint replyOption = BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
        if (replyOption != option) throw new IOException($"option reply for option {replyOption}, expected {option}");
        type = BinaryPrimitives.ReadUInt32BigEndian(header[12..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header[16..]);
        if (length > MaxOptionReply) throw new IOException($"option reply of {length} bytes (at most {MaxOptionReply} accepted)");
        var data = new byte[length];
        ReceiveExactly(socket, data);
        return data;
    }

    private static void ReceiveExactly(Socket socket, Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            int n;
            try { n = socket.Receive(buffer); }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut) { throw new IOException("the server stopped answering during the handshake"); }
            if (n == 0) throw new IOException("the server closed the connection during the handshake");
            buffer = buffer[n..];
        }
    }
}
