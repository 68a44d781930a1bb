using System.CommandLine;
using Microsoft.Extensions.Logging;
using SharpVhost.Cli.Service;
using SharpVhost.Devices.Block;
using SharpVhost.Devices.Block.Nbd;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;

namespace SharpVhost.Cli.Commands;

/// <summary><c>sharpvhost blk</c>: the vhost-user-blk backend, following QEMU's backend program conventions.</summary>
internal static class BlkCommand
{
    public static Command Create()
    {
        var socketPath = new Option<string?>("--socket-path") { Description = "Listen on this Unix socket path (a stale socket file is replaced); with --client, connect to it" };
        var fd = new Option<int?>("--fd") { Description = "Serve an inherited socket fd (listening or connected) instead of a path" };
        var blkFile = new Option<string?>("--blk-file") { Description = "Raw image file to serve" };
        var ram = new Option<string?>("--ram") { Description = "Serve a RAM disk of this size instead of a file (e.g. 256M, 1G)" };
        var nullDisk = new Option<string?>("--null") { Description = "Serve a null disk of this size (writes dropped, reads untouched)" };
        var readOnly = new Option<bool>("--read-only") { Description = "Refuse writes (offers VIRTIO_BLK_F_RO)" };
        var direct = new Option<bool>("--direct") { Description = "Open the image with O_DIRECT for aligned requests" };
        var numQueues = new Option<int>("--num-queues") { Description = "Number of request queues", DefaultValueFactory = _ => 1 };
        var backend = new BackendCliOptions();
        var serial = new Option<string>("--serial") { Description = "Serial number reported by GET_ID (20 bytes max)", DefaultValueFactory = _ => "sharpvhost" };
        var ioDelay = new Option<double>("--io-delay-ms") { Description = "Add this latency to every read and write, in milliseconds, fractions allowed (emulates a slow disk; crash-recovery tests use it)" };
        var ioDelayUs = new Option<double>("--io-delay-us") { Description = "The same latency in microseconds" };
        var nbd = new Option<string?>("--nbd") { Description = "Serve an NBD export: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH (qemu-nbd, nbdkit)" };
        var nbdReconnect = new Option<double>("--nbd-reconnect-delay") { Description = "Seconds requests wait for a reconnect when the NBD server goes away, then fail with IOERR (0: fail at once)" };
        var nbdTimeout = new Option<double>("--nbd-timeout") { Description = "Seconds an NBD server may leave waiting requests unanswered before its connection is dropped as hung", DefaultValueFactory = _ => 30 };
        var aio = new Option<string>("--aio") { Description = "Storage engine for --blk-file: io_uring (the default where io_uring_setup works) or threads" };
        aio.AcceptOnlyFromAmong("io_uring", "threads");
        var command = new Command("blk", "Serve a block device over vhost-user (vhost-user-blk)")
        {
            socketPath, fd, blkFile, ram, nullDisk, nbd, nbdReconnect, nbdTimeout, readOnly, direct, numQueues, serial, ioDelay, ioDelayUs, aio,
        };
        backend.AddTo(command);
        command.SetAction(parse =>
        {
            string? path = parse.GetValue(socketPath);
            int? inherited = parse.GetValue(fd);
            var activated = SystemdSockets.Take();
            var targets = BackendTarget.Resolve(path is null ? [] : [path], inherited is null ? [] : [inherited.Value],
                parse.GetValue(backend.Client), activated, out var conflict);
            if (targets is null) return Fail(conflict!);
            if (targets.Count != 1) return Fail($"one block device serves one socket; systemd passed {targets.Count} (LISTEN_FDS)");
            var target = targets[0];
            IBlockStorage storage;
            SocketFileAccess? access;
            LogLevel level;
            ILoggerFactory? nbdLogging = null; // the NBD client logs from its first connection on
            try
            {
                level = backend.ReadLogLevel(parse);
                access = backend.ReadSocketAccess(parse);
                if (access is not null && !targets.All(t => t.CreatesSocketFile))
                    throw new ArgumentException("--socket-mode and --socket-group apply to the socket file a listening --socket-path creates (under systemd: SocketMode=, SocketGroup=)");
                if (path is null && inherited is null) SystemdSockets.Adopt(activated);
                double delayUs = parse.GetValue(ioDelay) * 1000 + parse.GetValue(ioDelayUs);
                if (delayUs < 0) return Fail("--io-delay-ms and --io-delay-us take a latency of zero or more");
                var nbdOptions = new NbdClientOptions
                {
                    ReconnectDelay = TimeSpan.FromSeconds(Math.Max(0, parse.GetValue(nbdReconnect))),
                    ReplyTimeout = TimeSpan.FromSeconds(Math.Max(0.1, parse.GetValue(nbdTimeout))),
                };
                if (parse.GetValue(nbd) is not null) nbdLogging = CliHost.CreateLogging(level);
                storage = OpenStorage(parse.GetValue(blkFile), parse.GetValue(ram), parse.GetValue(nullDisk), parse.GetValue(nbd), nbdOptions,
                    parse.GetValue(readOnly), parse.GetValue(direct), nbdLogging?.CreateLogger("nbd"), ParseEngine(parse.GetValue(aio)));
                if (delayUs > 0) storage = new DelayedStorage(storage, TimeSpan.FromMicroseconds(delayUs));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or FormatException)
            {
                nbdLogging?.Dispose();
                return Fail(e.Message);
            }
            using var nbdLog = nbdLogging;
            using var _ = storage;
            using var logging = CliHost.CreateLogging(level);
            var log = logging.CreateLogger("blk");
            int blockSize = storage is NbdStorage nbdStorage ? nbdStorage.BlockSize : 512;
            var device = new BlockDevice(storage, new BlockDeviceOptions { NumQueues = parse.GetValue(numQueues), Serial = parse.GetValue(serial)!, BlockSize = blockSize });
            var server = new BackendServer(device, backend.Read(parse), log);
            log.LogInformation("serving {Storage}, {Queues} queue(s), {Metadata} metadata access", storage.Description, device.QueueCount, parse.GetValue(backend.Metadata));
            try
            {
                using var service = ServiceLifetime.Start(1, parse.GetValue(backend.PidFile), log);
                target.Serve(server, access, service.Token, () => service.TargetReady($"serving {storage.Description} on {target.Name}"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
            {
                return Fail(e.Message);
            }
            log.LogInformation("stopped");
            return 0;
        });
        return command;
    }

    private static StorageEngineKind ParseEngine(string? aio) => aio switch
    {
        "io_uring" => StorageEngineKind.IoUring,
        "threads" => StorageEngineKind.Threads,
        _ => StorageEngineKind.Auto,
    };

    internal static IBlockStorage OpenStorage(string? file, string? ram, string? nullSize, string? nbd, NbdClientOptions nbdOptions,
        bool readOnly, bool direct, ILogger? nbdLog, StorageEngineKind engine = StorageEngineKind.Auto)
    {
        int given = (file is null ? 0 : 1) + (ram is null ? 0 : 1) + (nullSize is null ? 0 : 1) + (nbd is null ? 0 : 1);
        if (given != 1) throw new ArgumentException("give exactly one of --blk-file, --ram, --null and --nbd");
        if (file is not null) return new FileStorage(file, readOnly, direct, engine);
        if (nbd is not null)
        {
            // The export decides read-only; --read-only on a writable export is not something NBD can enforce for us.
            if (readOnly) throw new ArgumentException("--read-only with --nbd: export the disk read-only on the server (qemu-nbd -r, nbdkit -r)");
            if (direct) throw new ArgumentException("--direct with --nbd: the server decides its caching (qemu-nbd --cache=none)");
            return new NbdStorage(NbdUri.Parse(nbd), nbdOptions, nbdLog ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        }
        if (ram is not null) return new RamStorage(Size.Parse(ram));
        return new NullStorage(Size.Parse(nullSize!));
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"sharpvhost blk: {message}");
        return 2;
    }
}
