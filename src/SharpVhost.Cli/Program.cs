using System.CommandLine;
using SharpVhost.Cli.Commands;

var root = new RootCommand("SharpVhost: vhost-user virtio backends, a frontend library, and mmcheck")
{
    DemoCommand.Create(),
    BlkCommand.Create(),
    NetCommand.Create(),
    MmCheckCommand.Create(),
};
return root.Parse(args).Invoke();
