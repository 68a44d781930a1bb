using SharpVhost.Integration.Tests.Guest;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Block;

/// <summary>
/// A Linux guest with a vhost-user-blk disk writes patterns (O_DIRECT and buffered), reads them
/// back, and the host checks the image file; against every backend in <see cref="BlockBackends"/>.
/// These tests fail, never skip, when QEMU or the guest kernel is missing.
/// </summary>
public sealed class BlockGuestTests
{
    public static TheoryData<string, int, bool> Configurations()
    {
        var data = new TheoryData<string, int, bool>();
        foreach (var backend in BlockBackends.All.Keys)
        {
            data.Add(backend, 1, false);
            data.Add(backend, 2, false);
            data.Add(backend, 1, true); // packed=on: the backend may still end up with a split ring (qsd 7.2 does)
        }
        return data;
    }

    public static TheoryData<string> Backends() => BlockBackends.Names();

    [Theory]
    [MemberData(nameof(Configurations))]
    public async Task Guest_writes_patterns_that_read_back_and_land_in_the_image(string backend, int queues, bool packed)
    {
        using var temp = new TempDirectory();
        var seed = 100 + queues * 10 + (packed ? 1 : 0);
        var image = CreateImage(temp);
        var socket = temp.File("blk.sock");

        GuestRun run;
        await using (var server = await BlockBackends.Get(backend).StartAsync(new BlockBackendRequest(socket, image, queues, temp.Path)))
            run = await BootAsync(temp, server, socket, queues, packed, seed, "write");

        AssertGuestVerified(run, seed);
        Assert.Equal(queues.ToString(), run.Single("SV-QUEUES"));
        // Our backend offers RING_PACKED, so packed=on must really give the guest a packed ring
        // (qsd 7.2 silently runs a split one). The guest lists feature bits as a string, bit 0 first.
        const int RingPacked = 34;
        if (packed && backend.StartsWith("sharpvhost", StringComparison.Ordinal))
            Assert.True(run.Single("SV-FEATURES")[RingPacked] == '1', $"packed ring not negotiated: {run.Single("SV-FEATURES")}");
        Assert.Equal((BlockPatterns.DiskBytes / 512).ToString(), run.Single("SV-SIZE"));
        // The script spreads its I/O over the vCPUs, so every queue must have completed requests.
        var interrupts = run.Tagged("SV-IRQ").ToDictionary(words => words[0], words => long.Parse(words[1]));
        Assert.Equal(Enumerable.Range(0, queues).Select(q => q.ToString()), interrupts.Keys.Order());
        Assert.All(interrupts, queue => Assert.True(queue.Value > 0, $"queue {queue.Key} completed nothing\n{run.Report}"));
        // The backend has stopped: everything the guest completed must be in the file.
        AssertImageHolds(image, seed);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Second_boot_sees_the_data_the_first_boot_wrote(string backend)
    {
        using var temp = new TempDirectory();
        const int seed = 200;
        var image = CreateImage(temp);
        var socket = temp.File("blk.sock");

        await using (var server = await BlockBackends.Get(backend).StartAsync(new BlockBackendRequest(socket, image, 1, temp.Path)))
        {
            AssertGuestVerified(await BootAsync(temp, server, socket, 1, false, seed, "write"), seed);
            // The same backend process serves a second guest after the first disconnected.
            AssertGuestVerified(await BootAsync(temp, server, socket, 1, false, seed, "verify"), seed);
        }
        AssertImageHolds(image, seed);

        // And a fresh backend process reads back what the first one wrote.
        var freshSocket = temp.File("blk2.sock");
        await using (var fresh = await BlockBackends.Get(backend).StartAsync(new BlockBackendRequest(freshSocket, image, 1, temp.Path)))
            AssertGuestVerified(await BootAsync(temp, fresh, freshSocket, 1, false, seed, "verify"), seed);
    }

    internal static string CreateImage(TempDirectory temp)
    {
        var image = temp.File("disk.img");
        using (var file = File.Create(image)) file.SetLength(BlockPatterns.DiskBytes); // sparse, reads as zeros
        return image;
    }

    internal static async Task<GuestRun> BootAsync(
        TempDirectory temp, IRunningBackend server, string socket, int queues, bool packed, int seed, string mode)
    {
        var kernel = GuestKernel.FindInstalled();
        var options = new QemuGuestOptions
        {
            Kernel = kernel,
            Initramfs = await InitramfsCache.GetAsync(Tools.GuestFile("blk-test.sh"), kernel),
            Name = $"blk-{mode}-{Path.GetFileNameWithoutExtension(socket)}",
            WorkDirectory = temp.Path,
            Cpus = queues, // Linux gives a disk at most one queue per vCPU
            Devices = [new VhostUserBlockDevice(socket, queues) { ExtraProperties = packed ? ["packed=on"] : [] }],
            Parameters = new Dictionary<string, string> { ["SEED"] = seed.ToString(), ["MODE"] = mode },
            PeerLog = () => server.Log,
        };
        return await QemuGuest.RunAsync(options);
    }

    // Each case read back right in the guest, and the guest's pattern is the host's pattern.
    internal static void AssertGuestVerified(GuestRun run, int seed)
    {
        run.AssertSucceeded();
        var reported = run.Tagged("SV-CASE");
        Assert.True(reported.Count == BlockPatterns.Cases.Count,
            $"{run.Name}: expected {BlockPatterns.Cases.Count} SV-CASE lines, got {reported.Count}\n{run.Report}");
        foreach (var expected in BlockPatterns.Cases)
        {
            var line = reported.Single(words => words[0] == expected.Index.ToString());
            Assert.Equal(expected.Offset.ToString(), line[1]);
            Assert.Equal(expected.Length.ToString(), line[2]);
            Assert.Equal(expected.Direct ? "direct" : "buffered", line[3]);
            Assert.Equal(BlockPatterns.Sha256(BlockPatterns.Generate(seed, expected)), line[4]);
            Assert.Equal("OK", line[5]);
        }
    }

    // Byte for byte: every case in place, zeros everywhere else.
    internal static void AssertImageHolds(string image, int seed)
    {
        var actual = File.ReadAllBytes(image);
        var expected = BlockPatterns.ExpectedImage(seed);
        Assert.Equal(expected.Length, actual.Length);
        var firstDifference = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(firstDifference == expected.Length,
            $"image differs from the expected patterns at byte {firstDifference} " +
            $"(case {BlockPatterns.Cases.FirstOrDefault(c => firstDifference >= c.Offset && firstDifference < c.Offset + c.Length)?.Index.ToString() ?? "none: should be zero"})");
    }
}
