using SharpVhost.Interop;

namespace SharpVhost.Devices.Block;

/// <summary>Which asynchronous engine a file storage's queues use (<c>--aio</c>).</summary>
public enum StorageEngineKind
{
    /// <summary>io_uring where this kernel and its policy allow a ring, threads otherwise.</summary>
    Auto,
    IoUring,
    Threads,
}

public static class StorageEngines
{
    /// <summary>Turns <see cref="StorageEngineKind.Auto"/> into what runs; an explicit io_uring that cannot be set up is an error.</summary>
    public static StorageEngineKind Resolve(StorageEngineKind kind)
    {
        if (kind == StorageEngineKind.Threads) return kind;
        if (IoUring.IsAvailable(out int errno)) return StorageEngineKind.IoUring;
        if (kind == StorageEngineKind.IoUring) throw new IOException($"io_uring is not available here (io_uring_setup: errno {errno})", errno);
        return StorageEngineKind.Threads;
    }

    public static string Name(StorageEngineKind kind) => kind switch
    {
        StorageEngineKind.IoUring => "io_uring",
        StorageEngineKind.Threads => "threads",
        _ => "auto",
    };
}
