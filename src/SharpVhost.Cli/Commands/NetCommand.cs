using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using SharpVhost.Cli.Service;
using SharpVhost.Devices.Net;
using SharpVhost.Devices.Net.Endpoints;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Cli.Commands;

/// <summary>
/// <c>sharpvhost net</c>: vhost-user-net backends, one per socket, all with the same kind of endpoint
/// (or all ports of one built-in switch). Serves until SIGINT/SIGTERM, one frontend per socket at a
/// time, like the block backend; on exit prints each port's counters as one JSON line on stdout.
/// </summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class NetJson : System.Text.Json.Serialization.JsonSerializerContext;

internal static class NetCommand
{
    public static Command Create()
    {
        var socketPaths = new Option<string[]>("--socket-path") { Description = "Listen on this Unix socket path (with --client, connect to it); repeat for several ports", AllowMultipleArgumentsPerToken = false };
        var fds = new Option<int[]>("--fd") { Description = "Serve an inherited socket fd (listening or connected) instead of a path; repeat for several ports", AllowMultipleArgumentsPerToken = false };
        var switchMode = new Option<bool>("--switch") { Description = "Join the ports with a built-in learning switch" };
        var tap = new Option<string?>("--tap") { Description = "Connect the (single) port to this TAP interface (created if missing)" };
        var sink = new Option<bool>("--sink") { Description = "Count and drop what the guest sends" };
        var source = new Option<bool>("--source") { Description = "Fill the guest's receive queue with generated frames" };
        var frameSize = new Option<int>("--frame-size") { Description = "Frame size for --source (bytes, Ethernet header included)", DefaultValueFactory = _ => 64 };
        var count = new Option<long?>("--count") { Description = "Frames --source generates in total (default: no end)" };
        var echo = new Option<bool>("--echo") { Description = "Send each frame back with its MAC addresses swapped" };
        var queues = new Option<int>("--queues") { Description = "Queue pairs per port", DefaultValueFactory = _ => 1 };
        var mtu = new Option<int>("--mtu") { Description = "MTU offered to the guest (VIRTIO_NET_F_MTU) and enforced on transmit", DefaultValueFactory = _ => VirtioNet.DefaultMtu };
        var mac = new Option<string?>("--mac") { Description = "MAC address in config space (first port; the next ports count up)" };
        var backend = new BackendCliOptions();
        var statsInterval = new Option<double>("--stats-interval") { Description = "Log each port's counters every so many seconds (0: only at exit)" };
        var command = new Command("net", "Serve virtio-net devices over vhost-user (vhost-user-net) with a switch, TAP or traffic endpoint")
        {
            socketPaths, fds, switchMode, tap, sink, source, frameSize, count, echo, queues, mtu, mac, statsInterval,
        };
        backend.AddTo(command);
        command.SetAction(parse =>
        {
            var paths = parse.GetValue(socketPaths) ?? [];
            var inherited = parse.GetValue(fds) ?? [];
            var activated = SystemdSockets.Take();
            var targets = BackendTarget.Resolve(paths, inherited, parse.GetValue(backend.Client), activated, out var conflict);
            if (targets is null) return Fail(conflict!);
            string? tapName = parse.GetValue(tap);
            int modes = (parse.GetValue(switchMode) ? 1 : 0) + (tapName is null ? 0 : 1) + (parse.GetValue(sink) ? 1 : 0) + (parse.GetValue(source) ? 1 : 0) + (parse.GetValue(echo) ? 1 : 0);
            if (modes != 1) return Fail("give exactly one of --switch, --tap, --sink, --source and --echo");
            if (tapName is not null && targets.Count != 1) return Fail("--tap serves exactly one socket");
            MacAddress? firstMac = null;
            SocketFileAccess? access;
            LogLevel level;
            try
            {
                if (parse.GetValue(mac) is { } m) firstMac = MacAddress.Parse(m);
                level = backend.ReadLogLevel(parse);
                access = backend.ReadSocketAccess(parse);
                if (access is not null && !targets.All(t => t.CreatesSocketFile))
                    throw new ArgumentException("--socket-mode and --socket-group apply to the socket file a listening --socket-path creates (under systemd: SocketMode=, SocketGroup=)");
                if (paths.Length == 0 && inherited.Length == 0) SystemdSockets.Adopt(activated);
            }
            catch (Exception e) when (e is FormatException or ArgumentException or IOException) { return Fail(e.Message); }

            using var logging = CliHost.CreateLogging(level);
            var log = logging.CreateLogger("net");
            var netSwitch = parse.GetValue(switchMode) ? new NetSwitch() : null;
            var devices = new List<NetDevice>();
            try
            {
                for (int i = 0; i < targets.Count; i++)
                {
                    NetEndpoint endpoint = netSwitch is not null ? netSwitch.AddPort(targets[i].Name)
                        : tapName is not null ? new TapEndpoint(tapName, parse.GetValue(queues))
                        : parse.GetValue(sink) ? new SinkEndpoint()
                        : parse.GetValue(source) ? new SourceEndpoint(parse.GetValue(frameSize), parse.GetValue(count) ?? long.MaxValue)
                        : new EchoEndpoint();
                    var options = new NetDeviceOptions
                    {
                        Name = targets[i].Name,
                        Mac = firstMac is { } f ? new MacAddress(f.Value + (ulong)i) : null,
                        QueuePairs = parse.GetValue(queues),
                        Mtu = parse.GetValue(mtu),
                        OfferMtu = parse.GetValue(mtu) != VirtioNet.DefaultMtu,
                    };
                    devices.Add(new NetDevice(endpoint, options));
                }
            }
            catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
            {
                foreach (var d in devices) d.Dispose();
                return Fail(e.Message);
            }

            var backendOptions = backend.Read(parse);
            int exitCode = 0;
            try
            {
                using var service = ServiceLifetime.Start(targets.Count, parse.GetValue(backend.PidFile), log,
                    onHangup: () => { foreach (var d in devices) log.LogInformation("{Name}: {Counters}", d.Options.Name, d.Port.Counters); });
                var threads = devices.Select((device, i) => new Thread(() =>
                {
                    try
                    {
                        targets[i].Serve(new BackendServer(device, backendOptions, logging.CreateLogger($"net{i}")), access, service.Token,
                            () => service.TargetReady($"{targets.Count} port(s) serving"));
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
                    {
                        log.LogError("{Port}: {Reason}", targets[i].Name, e.Message);
                        exitCode = 2;
                        service.Stop();
                    }
                }) { Name = $"net-port{i}" }).ToList();
                foreach (var d in devices)
                    log.LogInformation("port {Name}: {Endpoint}, {Pairs} queue pair(s), MAC {Mac}, MTU {Mtu}, {Metadata} metadata access",
                        d.Options.Name, d.Endpoint.Description, d.Options.QueuePairs, d.Port.Mac, d.Port.Mtu, backendOptions.Metadata);
                foreach (var t in threads) t.Start();
                double interval = parse.GetValue(statsInterval);
                while (!service.Token.WaitHandle.WaitOne(interval > 0 ? TimeSpan.FromSeconds(interval) : Timeout.InfiniteTimeSpan))
                    foreach (var d in devices) log.LogInformation("{Name}: {Counters}", d.Options.Name, d.Port.Counters);
                foreach (var t in threads) t.Join();
            }
            catch (IOException e) { log.LogError("{Reason}", e.Message); exitCode = 2; } // the pid file
            Console.WriteLine("[" + string.Join(",", devices.Select(Summary)) + "]");
            foreach (var d in devices) d.Dispose();
            log.LogInformation("stopped");
            return exitCode;
        });
        return command;
    }

    /// <summary>One port's counters as a JSON object (written by hand: no reflection, trimming-safe).</summary>
    private static string Summary(NetDevice d)
    {
        var c = d.Port.Counters;
        return $"{{\"port\":{JsonSerializer.Serialize(d.Options.Name, NetJson.Default.String)},\"txFrames\":{Interlocked.Read(ref c.TxFrames)},\"txBytes\":{Interlocked.Read(ref c.TxBytes)},\"txDrops\":{c.TxDrops}," +
               $"\"rxFrames\":{Interlocked.Read(ref c.RxFrames)},\"rxBytes\":{Interlocked.Read(ref c.RxBytes)},\"rxDrops\":{c.RxDrops}}}";
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"sharpvhost net: {message}");
        return 2;
    }
}
