namespace SharpVhost.Integration.Tests.Guest;

/// <summary>A guest device whose virtqueues QEMU hands to a vhost-user backend on a Unix socket.</summary>
public abstract record VhostUserDevice(string SocketPath)
{
    /// <summary>Extra "-device" properties, e.g. "packed=on", appended as given.</summary>
    public IReadOnlyList<string> ExtraProperties { get; init; } = [];

    /// <summary>
    /// If set, QEMU reconnects to a restarted backend after this many seconds
    /// (chardev reconnect=N); guest I/O stalls meanwhile and then completes.
    /// </summary>
    public int? ReconnectSeconds { get; init; }

    /// <summary>
    /// If set, QEMU listens on the socket (chardev server=on, waiting for the backend before the guest
    /// starts) and the backend connects to it: libvirt's mode='server', the backend's --client.
    /// </summary>
    public bool Server { get; init; }

    /// <summary>QEMU arguments for this device; <paramref name="index"/> makes the ids unique.</summary>
    public abstract IEnumerable<string> QemuArguments(int index);

    protected string Chardev(string id) =>
        $"socket,id={id},path={SocketPath}" + (ReconnectSeconds is { } seconds ? $",reconnect={seconds}" : "") + (Server ? ",server=on,wait=on" : "");

    protected string DeviceProperties(string baseProperties) =>
        ExtraProperties.Count == 0 ? baseProperties : baseProperties + "," + string.Join(",", ExtraProperties);
}

/// <summary>vhost-user-blk-pci: the guest sees it as /dev/vda (the first one).</summary>
public sealed record VhostUserBlockDevice(string SocketPath, int NumQueues = 1) : VhostUserDevice(SocketPath)
{
    public override IEnumerable<string> QemuArguments(int index) =>
    [
        "-chardev", Chardev($"blkchr{index}"),
        "-device", DeviceProperties($"vhost-user-blk-pci,chardev=blkchr{index},num-queues={NumQueues}"),
    ];
}

/// <summary>
/// virtio-net-pci on a vhost-user netdev. vectors=0 (legacy INTx) is mandatory under TCG:
/// QEMU 7.2 crashes starting vhost-user-net with MSI-X without KVM.
/// </summary>
public sealed record VhostUserNetDevice(string SocketPath, string Mac) : VhostUserDevice(SocketPath)
{
    public override IEnumerable<string> QemuArguments(int index) =>
    [
        "-chardev", Chardev($"netchr{index}"),
        "-netdev", $"vhost-user,id=net{index},chardev=netchr{index}",
        "-device", DeviceProperties($"virtio-net-pci,netdev=net{index},mac={Mac},vectors=0"),
    ];
}
