using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;
using Xunit.Abstractions;

namespace SharpVhost.Integration.Tests.Packaging;

/// <summary>
/// The packages as a .NET user meets them: a fresh console project, outside the repository, restores
/// SharpVhost.Devices from a local folder feed of the packed .nupkg files and reads a block through
/// BlockClient from a running backend, the NativeAOT binary that ships.
/// </summary>
[Collection(PackagingCollection.Name)]
public sealed class PackageConsumerTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact]
    public async Task Fresh_console_project_reads_a_block_through_the_packed_BlockClient()
    {
        string aot = ShippedProducts.AotBinary();
        string feed = ShippedProducts.PackageFeed();
        Assert.True(File.Exists(Path.Combine(feed, $"SharpVhost.Devices.{ShippedProducts.Version}.nupkg")), "SharpVhost.Devices was not packed");

        // A disk whose block 3 says something recognisable.
        string image = _dir.File("disk.img");
        var disk = new byte[1 << 20];
        var pattern = new byte[4096];
        new Random(16).NextBytes(pattern);
        pattern.CopyTo(disk, 3 * 4096);
        File.WriteAllBytes(image, disk);

        string project = Path.Combine(_dir.Path, "consumer");
        Directory.CreateDirectory(project);
        File.WriteAllText(Path.Combine(project, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config><add key="globalPackagesFolder" value="{Path.Combine(_dir.Path, "packages")}" /></config>
              <packageSources><add key="sharpvhost-local" value="{feed}" /></packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(project, "consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="SharpVhost.Devices" Version="{ShippedProducts.Version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(project, "Program.cs"), """
            using SharpVhost.Devices.Block;

            using var disk = BlockClient.Connect(args[0], new BlockClientOptions { QueueDepth = 4 });
            var buffer = disk.AllocateBuffer(4096);
            await disk.ReadAsync(offset: 3 * 4096, buffer);
            Console.WriteLine($"capacity {disk.Capacity}");
            Console.WriteLine("block " + Convert.ToHexString(buffer.Span));
            """);

        var build = ShippedProducts.Run("dotnet", ["build", "-c", "Release", "-nologo", "-v", "q", "-o", Path.Combine(project, "out")], TimeSpan.FromMinutes(5), project,
            new Dictionary<string, string?> { ["NUGET_PACKAGES"] = null, ["MSBuildSDKsPath"] = null, ["MSBUILD_EXE_PATH"] = null });
        output.WriteLine(build.Output);
        Assert.True(build.ExitCode == 0, "the consumer project did not build:\n" + build.Output);
        // What it restored came from the folder feed: the package's own files, its licence and README.
        string restored = Path.Combine(_dir.Path, "packages", "sharpvhost.devices", ShippedProducts.Version);
        Assert.True(File.Exists(Path.Combine(restored, "README.md")), "no package README in " + restored);
        Assert.True(Directory.Exists(Path.Combine(_dir.Path, "packages", "sharpvhost.interop")), "SharpVhost.Interop did not come as a dependency");

        string socket = _dir.File("blk.sock");
        await using var backend = await BackendProcess.StartAsync("sharpvhost-aot", aot, ["blk", "--socket-path", socket, "--blk-file", image], [socket], _dir.Path);
        var run = ShippedProducts.Run("dotnet", [Path.Combine(project, "out", "consumer.dll"), socket], TimeSpan.FromMinutes(1), project);
        output.WriteLine(run.Output);
        Assert.True(run.ExitCode == 0, "the consumer failed:\n" + run.Output + "\nbackend:\n" + backend.Log);
        Assert.Contains($"capacity {disk.Length}", run.Stdout);
        Assert.Contains("block " + Convert.ToHexString(pattern), run.Stdout);
    }

    public void Dispose() => _dir.Dispose();
}
