using System.CommandLine;
using SharpVhost.Cli;
using SharpVhost.Cli.Commands;

// Run as sharpvhost-blk / sharpvhost-net (a symlink to this program), the subcommand is implied.
args = Capabilities.WithImpliedCommand(args, Capabilities.InvokedAs());
// --print-capabilities is answered before any other option is parsed or validated (QEMU's conventions).
if (Capabilities.Requested(args) is { } capabilities)
{
    Console.WriteLine(capabilities);
    return 0;
}

var root = new RootCommand("SharpVhost: vhost-user virtio backends, a frontend library, and mmcheck")
{
    DemoCommand.Create(),
    BlkCommand.Create(),
    NetCommand.Create(),
    MmCheckCommand.Create(),
};
return root.Parse(args).Invoke();
