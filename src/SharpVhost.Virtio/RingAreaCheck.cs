using SharpVhost.Memory;

namespace SharpVhost.Virtio;

/// <summary>
/// The vq_access_ok analogue shared by the checked accessors of both ring layouts: a ring area must be
/// guest memory from its first to its last byte (it may span adjacent regions or IOTLB entries),
/// readable, and writable where the device writes it. A ring the IOTLB does not cover yet is a miss
/// to resolve, not an error.
/// </summary>
internal static class RingAreaCheck
{
    /// <summary>
    /// The direct accessors' check: the area lies in one region (or one IOTLB entry) and grants what the
    /// device does with it: read, and write too where <paramref name="write"/> (an area the device
    /// writes it also reads back, e.g. the used index). The same rights the checked accessors ask for.
    /// </summary>
    public static bool TryMapDirect(GuestMemory memory, ulong address, ulong size, bool write, out nint host, out ulong gpa)
    {
        if (!memory.TryTranslateFrontend(address, size, write, out host, out gpa)) return false;
        return !write || memory.Iotlb is null || memory.TryTranslateFrontend(address, size, false, out _, out _);
    }

    /// <summary>Null if the area is usable, else why not. Throws <see cref="IotlbMissException"/> on a miss.</summary>
    public static string? Check(GuestMemory memory, string area, ulong address, ulong size, bool write)
    {
        var status = memory.Check(address, size, write ? IotlbAccess.ReadWrite : IotlbAccess.Read, DeviceAddressKind.Ring, out ulong stoppedAt);
        return status switch
        {
            TranslationStatus.Mapped => null,
            TranslationStatus.IotlbMiss => throw new IotlbMissException(new IotlbMiss(stoppedAt, write)),
            _ => $"{area} [{address:x}, +{size:x}) is not {(write ? "writable " : "")}guest memory",
        };
    }
}
