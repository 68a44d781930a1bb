using System.CommandLine;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using SharpVhost.Devices.Block;
using SharpVhost.VhostUser.Backend;
using SharpVhost.Virtio;
using Spectre.Console;

namespace SharpVhost.Cli.Commands;

/// <summary>
/// <c>sharpvhost demo</c>: the main job on an embedded default. A RAM disk is served by our
/// vhost-user-blk backend on a real Unix socket; our frontend library connects, shares a memfd,
/// writes a pattern over the whole disk and reads it back to verify it.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var size = new Option<string>("--size") { Description = "RAM disk size", DefaultValueFactory = _ => "256M" };
        var blockSize = new Option<int>("--block-size") { Description = "Bytes per request", DefaultValueFactory = _ => 4096 };
        var depth = new Option<int>("--queue-depth") { Description = "Requests in flight", DefaultValueFactory = _ => 32 };
        var metadata = new Option<MetadataAccess>("--metadata") { Description = "Backend ring metadata accessor", DefaultValueFactory = _ => MetadataAccess.Direct };
        var command = new Command("demo", "Serve a RAM disk over vhost-user and drive it with the built-in frontend (write, then verify)")
        {
            size, blockSize, depth, metadata,
        };
        command.SetAction(parse => Run(Size.Parse(parse.GetValue(size)!), parse.GetValue(blockSize), parse.GetValue(depth), parse.GetValue(metadata)));
        return command;
    }

    private static int Run(long diskSize, int blockSize, int depth, MetadataAccess metadata)
    {
        if (blockSize <= 0 || blockSize % 512 != 0 || diskSize % blockSize != 0 || depth < 1)
        {
            Console.Error.WriteLine("sharpvhost demo: the block size must be a multiple of 512 that divides the disk size; the depth at least 1");
            return 2;
        }
        string dir = Directory.CreateTempSubdirectory("sharpvhost-demo-").FullName;
        string socket = Path.Combine(dir, "blk.sock");
        using var logging = CliHost.CreateLogging(verbose: false);
        using var storage = new RamStorage(diskSize);
        var device = new BlockDevice(storage, new BlockDeviceOptions { NumQueues = 1, Serial = "sharpvhost-demo" });
        var server = new BackendServer(device, new BackendOptions { Metadata = metadata }, logging.CreateLogger("backend"));
        using var stop = new CancellationTokenSource();
        using var listening = new ManualResetEventSlim();
        var serverThread = new Thread(() => server.Run(socket, stop.Token, listening.Set)) { IsBackground = true, Name = "backend" };
        serverThread.Start();
        listening.Wait(TimeSpan.FromSeconds(10));

        AnsiConsole.MarkupLine($"[bold]SharpVhost demo[/]: {diskSize >> 20} MiB RAM disk over vhost-user at [blue]{socket}[/], {metadata} metadata access");
        long blocks = diskSize / blockSize;
        var results = new List<(string Phase, long Requests, TimeSpan Time)>();
        long mismatches = 0;
        using (var client = BlockClient.Connect(socket, new BlockClientOptions { QueueDepth = depth, QueueSize = Math.Max(64, (int)BitOperations.RoundUpToPowerOf2((uint)depth * 2)), BufferBytes = (ulong)(depth * blockSize) + (1 << 20) }))
        {
            AnsiConsole.MarkupLine($"frontend connected: capacity {client.Capacity >> 20} MiB, serial '{client.GetIdAsync().GetAwaiter().GetResult()}', features 0x{client.Features:x}");
            var buffers = Enumerable.Range(0, depth).Select(_ => client.AllocateBuffer(blockSize)).ToArray();
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    foreach (var phase in new[] { "write", "verify" })
                    {
                        var task = ctx.AddTask($"{phase,-6} {blocks} x {blockSize} B", maxValue: blocks);
                        long done = 0;
                        var clock = Stopwatch.StartNew();
                        var workers = Enumerable.Range(0, depth).Select(w => Task.Run(async () =>
                        {
                            var buffer = buffers[w];
                            for (long b = w; b < blocks; b += depth)
                            {
                                if (phase == "write")
                                {
                                    Pattern.Fill(buffer.Span, b);
                                    await client.WriteAsync(b * blockSize, buffer);
                                }
                                else
                                {
                                    buffer.Span.Clear();
                                    await client.ReadAsync(b * blockSize, buffer);
                                    if (!Pattern.Check(buffer.Span, b)) Interlocked.Increment(ref mismatches);
                                }
                                Interlocked.Increment(ref done);
                            }
                        })).ToArray();
                        var all = Task.WhenAll(workers);
                        while (!all.Wait(100)) task.Value = Interlocked.Read(ref done);
                        all.GetAwaiter().GetResult();
                        task.Value = blocks;
                        results.Add((phase, blocks, clock.Elapsed));
                    }
                });
        }
        stop.Cancel();
        serverThread.Join(TimeSpan.FromSeconds(10));
        Directory.Delete(dir, recursive: true);

        var table = new Table().AddColumns("phase", "requests", "seconds", "IOPS", "MiB/s");
        foreach (var (phase, requests, time) in results)
            table.AddRow(phase, requests.ToString(), time.TotalSeconds.ToString("F2"), (requests / time.TotalSeconds).ToString("N0"),
                (requests * (double)blockSize / time.TotalSeconds / (1 << 20)).ToString("N1"));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(mismatches == 0 ? "[green]verified: every block read back as written[/]" : $"[red]{mismatches} blocks differ[/]");
        AnsiConsole.MarkupLine("\nAttach a real VM: run [blue]./sharpvhost blk --socket-path /tmp/blk.sock --blk-file disk.img[/], then");
        Console.WriteLine("  qemu-system-x86_64 -accel kvm -m 1G -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \\");
        Console.WriteLine("    -chardev socket,id=c0,path=/tmp/blk.sock -device vhost-user-blk-pci,chardev=c0,num-queues=1 ...");
        return mismatches == 0 ? 0 : 1;
    }

    /// <summary>A per-block pattern both phases can compute: a block's bytes depend on its index.</summary>
    private static class Pattern
    {
        public static void Fill(Span<byte> block, long index)
        {
            var words = MemoryMarshal.Cast<byte, ulong>(block);
            ulong x = (ulong)index * 0x9E3779B97F4A7C15ul + 1;
            for (int i = 0; i < words.Length; i++) words[i] = x = x * 6364136223846793005ul + 1442695040888963407ul;
        }

        public static bool Check(ReadOnlySpan<byte> block, long index)
        {
            var words = MemoryMarshal.Cast<byte, ulong>(block);
            ulong x = (ulong)index * 0x9E3779B97F4A7C15ul + 1;
            for (int i = 0; i < words.Length; i++) if (words[i] != (x = x * 6364136223846793005ul + 1442695040888963407ul)) return false;
            return true;
        }
    }
}
