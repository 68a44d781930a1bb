namespace SharpVhost.VhostUser.Protocol;

/// <summary>Fixed sizes and the caps this implementation enforces on what a peer may send.</summary>
public static class VhostUserLimits
{
    /// <summary>request (u32), flags (u32), size (u32).</summary>
    public const int HeaderSize = 12;

    /// <summary>
    /// Largest payload accepted. The largest legitimate message (a config-space access of
    /// <see cref="MaxConfigSize"/> bytes, or a full memory table) is well under this.
    /// </summary>
    public const int MaxPayloadSize = 4096;

    /// <summary>Most fds one message may carry (the memory-table limit; also the back-end channel limit).</summary>
    public const int MaxFds = 8;

    /// <summary>Regions in one SET_MEM_TABLE.</summary>
    public const int MaxMemTableRegions = 8;

    /// <summary>Largest config-space access (QEMU's VHOST_USER_MAX_CONFIG_SIZE).</summary>
    public const int MaxConfigSize = 256;
}
