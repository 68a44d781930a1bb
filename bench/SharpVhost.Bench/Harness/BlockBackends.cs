namespace SharpVhost.Bench;

/// <summary>What a block backend serves in a benchmark.</summary>
public enum BlockStorageKind
{
    /// <summary>Writes dropped, reads untouched: the device path alone (ours --null, qemu's null-co).</summary>
    Null,
    /// <summary>Data in RAM (ours --ram, qemu-storage-daemon on a file in tmpfs).</summary>
    Ram,
}

/// <summary>A vhost-user-blk backend program to start: ours or qemu-storage-daemon, with its command line.</summary>
public sealed record BlockBackendSpec(string Name, string Program, IReadOnlyList<string> Args, string SocketPath, string? BackingFile = null)
{
    public PeerProcess Start(int cpu) => PeerProcess.Start(Name, cpu, Program, Args);

    /// <summary><c>sharpvhost blk</c> with the given storage and metadata accessor.</summary>
    public static BlockBackendSpec Ours(SharpVhostCommand self, string socket, BlockStorageKind storage, long bytes, string metadata = "direct", bool busyPoll = false)
    {
        string size = $"{bytes >> 20}M";
        string[] storageArgs = storage == BlockStorageKind.Null ? ["--null", size] : ["--ram", size];
        return new BlockBackendSpec($"sharpvhost blk ({metadata}{(busyPoll ? ", busy-poll" : "")})", self.Program,
            [.. self.Args("blk", "--socket-path", socket, "--metadata", metadata), .. storageArgs, .. (busyPoll ? new[] { "--busy-poll" } : [])], socket);
    }

    /// <summary>
    /// qemu-storage-daemon's vhost-user-blk export of a null-co node or of a raw file in tmpfs
    /// (<paramref name="ramFile"/>, created by the caller).
    /// </summary>
    public static BlockBackendSpec QemuStorageDaemon(string socket, BlockStorageKind storage, long bytes, string? ramFile)
    {
        string blockdev = storage == BlockStorageKind.Null
            ? $"driver=null-co,node-name=disk0,size={bytes},read-zeroes=off"
            : $"driver=file,node-name=disk0,filename={ramFile},cache.direct=off";
        return new BlockBackendSpec("qemu-storage-daemon", Tools.QemuStorageDaemon,
        [
            "--blockdev", blockdev,
            "--export", $"type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path={socket},writable=on,num-queues=1",
        ], socket, ramFile);
    }
}
