using System.Diagnostics;
using SharpVhost.Devices.Block;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Service;

/// <summary>
/// What a service manager relies on: the socket file's mode and group as asked (seen with stat),
/// a pid file while running and gone after a clean SIGTERM exit, and SIGHUP survived.
/// </summary>
public sealed class ServiceOptionsTests
{
    [Fact]
    public async Task Socket_file_gets_the_mode_and_group_asked_for_and_the_pid_file_lives_with_the_process()
    {
        using var temp = new TempDirectory();
        string socket = temp.File("blk.sock"), pidFile = temp.File("blk.pid");
        var (program, prefix) = SharpVhostCli.Command();
        var backend = await BackendProcess.StartAsync("modes", program,
            [.. prefix, "blk", "--socket-path", socket, "--ram", "1M", "--socket-mode", "0640", "--socket-group", "daemon", "--pidfile", pidFile],
            [socket], temp.Path);
        int pid = backend.ProcessId;
        try
        {
            // stat(1) reads what the kernel holds: the bits and the group were set on the inode.
            Assert.Equal("640 daemon socket", Stat("%a %G %F", socket));
            Assert.Equal($"{pid}\n", File.ReadAllText(pidFile));
        }
        finally { await backend.DisposeAsync(); }
        Assert.Equal(0, backend.ExitCode);
        Assert.False(File.Exists(pidFile), "pid file left behind after SIGTERM");
        Assert.False(File.Exists(socket), "socket file left behind after SIGTERM");

        // A numeric gid is taken as it is.
        var numeric = await BackendProcess.StartAsync("gid", program,
            [.. prefix, "blk", "--socket-path", socket, "--ram", "1M", "--socket-mode", "600", "--socket-group", "1"], [socket], temp.Path);
        await using (numeric) Assert.Equal("600 1 socket", Stat("%a %g %F", socket));
    }

    [Fact]
    public async Task Sighup_is_logged_and_the_backend_keeps_serving()
    {
        using var temp = new TempDirectory();
        var socket = temp.File("blk.sock");
        var (program, prefix) = SharpVhostCli.Command();
        await using var backend = await BackendProcess.StartAsync("hup", program,
            [.. prefix, "blk", "--socket-path", socket, "--ram", "1M"], [socket], temp.Path);
        Signals.Hangup(backend.ProcessId);
        var watch = Stopwatch.StartNew();
        while (!backend.Log.Contains("SIGHUP") && backend.ExitCode is null && watch.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(20);
        Assert.Contains("SIGHUP", backend.Log);
        Assert.Null(backend.ExitCode);
        using var client = BlockClient.Connect(socket, new BlockClientOptions { BufferBytes = 1 << 20 });
        var buffer = client.AllocateBuffer(4096);
        await client.ReadAsync(0, buffer);
        Assert.Equal(1 << 20, client.Capacity);
    }

    [Fact]
    public async Task Bad_service_options_fail_early_with_a_message()
    {
        using var temp = new TempDirectory();
        var (program, prefix) = SharpVhostCli.Command();
        foreach (var (args, message) in new (string[], string)[]
        {
            (["blk", "--socket-path", temp.File("a.sock"), "--ram", "1M", "--socket-mode", "rw"], "octal"),
            (["blk", "--socket-path", temp.File("a.sock"), "--ram", "1M", "--socket-group", "no-such-group-sv"], "no such group"),
            (["blk", "--ram", "1M", "--client"], "--client"),
            (["blk", "--socket-path", temp.File("q.sock"), "--client", "--ram", "1M", "--socket-mode", "0600"], "apply to the socket file"),
            (["net", "--socket-path", temp.File("a.sock"), "--fd", "3", "--sink"], "incompatible"),
            (["blk", "--socket-path", temp.File("a.sock"), "--ram", "1M", "--log-level", "loud"], "log level"),
        })
        {
            var start = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in prefix.Concat(args)) start.ArgumentList.Add(a);
            using var process = Process.Start(start)!;
            var stderr = await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.True(process.ExitCode == 2, $"{string.Join(" ", args)}: exit {process.ExitCode}, {stderr}");
            Assert.Contains(message, stderr);
        }
    }

    private static string Stat(string format, string path)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat", ["-c", format, path]) { RedirectStandardOutput = true })!;
        var output = stat.StandardOutput.ReadToEnd().Trim();
        stat.WaitForExit();
        return output;
    }
}
