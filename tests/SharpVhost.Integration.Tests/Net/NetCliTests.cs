using System.Diagnostics;
using System.Text.Json;
using SharpVhost.Devices.Net;

namespace SharpVhost.Integration.Tests.Net;

/// <summary>`sharpvhost net` as a program: capabilities, and an echo port served to our frontend with its counters printed at exit.</summary>
public sealed class NetCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharpvhost-netcli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static ProcessStartInfo Cli(params string[] args)
    {
        string dir = AppContext.BaseDirectory;
        string apphost = Path.Combine(dir, "sharpvhost");
        var start = File.Exists(apphost) ? new ProcessStartInfo(apphost) : new ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(dir, "sharpvhost.dll") } };
        foreach (var a in args) start.ArgumentList.Add(a);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        return start;
    }

    [Fact]
    public void Prints_net_capabilities()
    {
        using var p = Process.Start(Cli("net", "--print-capabilities"))!;
        string output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(30_000));
        Assert.Equal(0, p.ExitCode);
        Assert.Equal("net", JsonDocument.Parse(output).RootElement.GetProperty("type").GetString());
    }

    [Fact]
    public void Refuses_two_endpoint_kinds()
    {
        using var p = Process.Start(Cli("net", "--socket-path", Path.Combine(_dir, "x.sock"), "--sink", "--echo"))!;
        p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(30_000));
        Assert.Equal(2, p.ExitCode);
    }

    [Fact]
    public async Task Echo_port_serves_our_frontend_and_reports_its_counters_at_exit()
    {
        string socket = Path.Combine(_dir, "echo.sock");
        using var p = Process.Start(Cli("net", "--socket-path", socket, "--echo", "--metadata", "checked"))!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            using (var client = NetClient.Connect(socket, timeout: TimeSpan.FromSeconds(30)))
            {
                var frame = new byte[100];
                MacAddress.Parse("02:00:00:00:00:0b").Write(frame);
                MacAddress.Parse("02:00:00:00:00:0a").Write(frame.AsSpan(6));
                var buffer = new byte[2048];
                for (int i = 0; i < 50; i++)
                {
                    Assert.True(client.Send(frame, TimeSpan.FromSeconds(10)));
                    Assert.Equal(100, client.Receive(buffer, TimeSpan.FromSeconds(10)));
                }
            }
            Assert.Equal(0, Kill(p.Id, 15));
            Assert.True(p.WaitForExit(30_000), await stderr);
            Assert.Equal(0, p.ExitCode);
            var port = JsonDocument.Parse(await stdout).RootElement[0];
            Assert.Equal(50, port.GetProperty("txFrames").GetInt64());
            Assert.Equal(50, port.GetProperty("rxFrames").GetInt64());
            Assert.Equal(0, port.GetProperty("rxDrops").GetInt64());
        }
        finally
        {
            if (!p.HasExited) p.Kill();
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
