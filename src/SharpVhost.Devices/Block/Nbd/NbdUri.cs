using System.Net;
using System.Net.Sockets;

namespace SharpVhost.Devices.Block.Nbd;

/// <summary>
/// Where an NBD export is, written as QEMU and libnbd write it: <c>nbd://HOST[:PORT]/EXPORT</c> or
/// <c>nbd+unix:///EXPORT?socket=PATH</c>. An empty export name is the server's default export.
/// </summary>
public sealed record NbdUri(string? Host, int Port, string? SocketPath, string ExportName)
{
    public bool IsUnix => SocketPath is not null;

    public static NbdUri Parse(string text)
    {
        const string tcp = "nbd://", unix = "nbd+unix://";
        if (text.StartsWith(unix, StringComparison.OrdinalIgnoreCase))
        {
            string rest = text[unix.Length..];
            int q = rest.IndexOf('?');
            if (q < 0) throw new FormatException($"NBD URI '{text}': nbd+unix needs ?socket=PATH");
            string authorityAndPath = rest[..q];
            if (!authorityAndPath.StartsWith('/')) throw new FormatException($"NBD URI '{text}': nbd+unix takes no host (nbd+unix:///EXPORT?socket=PATH)");
            string export = Uri.UnescapeDataString(authorityAndPath[1..]);
            string? socket = null;
            foreach (var pair in rest[(q + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = pair.IndexOf('=');
                string key = eq < 0 ? pair : pair[..eq];
                if (key == "socket") socket = Uri.UnescapeDataString(eq < 0 ? "" : pair[(eq + 1)..]);
                else throw new FormatException($"NBD URI '{text}': unknown parameter '{key}'");
            }
            if (string.IsNullOrEmpty(socket)) throw new FormatException($"NBD URI '{text}': socket= is empty");
            return new NbdUri(null, 0, socket, export);
        }
        if (text.StartsWith(tcp, StringComparison.OrdinalIgnoreCase))
        {
            string rest = text[tcp.Length..];
            if (rest.Contains('?')) throw new FormatException($"NBD URI '{text}': nbd:// takes no parameters");
            int slash = rest.IndexOf('/');
            string authority = slash < 0 ? rest : rest[..slash];
            string export = slash < 0 ? "" : Uri.UnescapeDataString(rest[(slash + 1)..]);
            string host = authority;
            int port = NbdProtocol.DefaultPort;
            int colon = authority.LastIndexOf(':');
            if (authority.StartsWith('['))
            {
                int close = authority.IndexOf(']');
                if (close < 0) throw new FormatException($"NBD URI '{text}': unclosed [");
                host = authority[1..close];
                if (close + 1 < authority.Length)
                {
                    if (authority[close + 1] != ':') throw new FormatException($"NBD URI '{text}': bad host");
                    port = ParsePort(text, authority[(close + 2)..]);
                }
            }
            else if (colon >= 0)
            {
                host = authority[..colon];
                port = ParsePort(text, authority[(colon + 1)..]);
            }
            if (host.Length == 0) throw new FormatException($"NBD URI '{text}': no host");
            return new NbdUri(host, port, null, export);
        }
        throw new FormatException($"NBD URI '{text}': expected nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH");
    }

    private static int ParsePort(string text, string port)
        => int.TryParse(port, out int p) && p is > 0 and < 65536 ? p : throw new FormatException($"NBD URI '{text}': bad port '{port}'");

    internal EndPoint EndPoint => IsUnix ? new UnixDomainSocketEndPoint(SocketPath!)
        : IPAddress.TryParse(Host, out var address) ? new IPEndPoint(address, Port) : new DnsEndPoint(Host!, Port);

    public override string ToString() => IsUnix
        ? $"nbd+unix:///{Uri.EscapeDataString(ExportName)}?socket={SocketPath}"
        : $"nbd://{(Host!.Contains(':') ? $"[{Host}]" : Host)}:{Port}/{Uri.EscapeDataString(ExportName)}";
}
