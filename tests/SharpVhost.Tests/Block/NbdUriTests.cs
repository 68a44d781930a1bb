using SharpVhost.Devices.Block.Nbd;

namespace SharpVhost.Tests.Block;

/// <summary>NBD URIs as QEMU and libnbd write them, and the ones refused with a reason.</summary>
public sealed class NbdUriTests
{
    [Theory]
    [InlineData("nbd://storage1/vm1", "storage1", 10809, "vm1")]
    [InlineData("nbd://storage1:10810/vm%201", "storage1", 10810, "vm 1")]
    [InlineData("nbd://127.0.0.1:9000", "127.0.0.1", 9000, "")]
    [InlineData("nbd://[::1]:9000/e", "::1", 9000, "e")]
    [InlineData("NBD://h/", "h", 10809, "")]
    public void Tcp_uris_give_host_port_and_export(string text, string host, int port, string export)
    {
        var uri = NbdUri.Parse(text);
        Assert.False(uri.IsUnix);
        Assert.Equal((host, port, export), (uri.Host, uri.Port, uri.ExportName));
        Assert.Equal(uri, NbdUri.Parse(uri.ToString())); // what the log prints parses back to the same place
    }

    [Theory]
    [InlineData("nbd+unix:///?socket=/run/nbd.sock", "/run/nbd.sock", "")]
    [InlineData("nbd+unix:///disk0?socket=/tmp/a%20b.sock", "/tmp/a b.sock", "disk0")]
    public void Unix_uris_give_socket_and_export(string text, string socket, string export)
    {
        var uri = NbdUri.Parse(text);
        Assert.True(uri.IsUnix);
        Assert.Equal((socket, export), (uri.SocketPath, uri.ExportName));
    }

    [Theory]
    [InlineData("nbd+unix:///disk0")]               // no socket
    [InlineData("nbd+unix://host/disk0?socket=/s")] // a host on a Unix URI
    [InlineData("nbd+unix:///?socket=")]
    [InlineData("nbd+unix:///?socket=/s&tls=on")]   // unknown parameter
    [InlineData("nbd://host:0/e")]
    [InlineData("nbd://host:70000/e")]
    [InlineData("nbd://:10809/e")]
    [InlineData("nbd://host/e?x=1")]
    [InlineData("nbds://host/e")]
    [InlineData("/dev/nbd0")]
    public void Malformed_uris_are_refused(string text) => Assert.Throws<FormatException>(() => NbdUri.Parse(text));
}
