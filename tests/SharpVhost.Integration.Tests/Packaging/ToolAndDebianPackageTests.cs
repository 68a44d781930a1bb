using SharpVhost.Integration.Tests.Support;
using Xunit.Abstractions;

namespace SharpVhost.Integration.Tests.Packaging;

/// <summary>
/// The backend's two packages: the `sharpvhost` dotnet tool installs from a local folder feed and runs;
/// the .deb installs with dpkg, answers --print-capabilities from /usr/bin, and removes cleanly.
/// </summary>
[Collection(PackagingCollection.Name)]
public sealed class ToolAndDebianPackageTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact]
    public void Dotnet_tool_installs_from_a_folder_feed_and_prints_capabilities()
    {
        string feed = ShippedProducts.PackageFeed();
        string tools = _dir.File("tools");
        var install = ShippedProducts.Run("dotnet", ["tool", "install", "--tool-path", tools, "--add-source", feed, "--version", ShippedProducts.Version, "sharpvhost"],
            TimeSpan.FromMinutes(3), _dir.Path, new Dictionary<string, string?> { ["NUGET_PACKAGES"] = _dir.File("packages") });
        output.WriteLine(install.Output);
        Assert.True(install.ExitCode == 0, "dotnet tool install failed:\n" + install.Output);

        var caps = ShippedProducts.Run(Path.Combine(tools, "sharpvhost"), ["blk", "--print-capabilities"], TimeSpan.FromMinutes(1), _dir.Path);
        Assert.True(caps.ExitCode == 0, caps.Output);
        Assert.Contains("\"type\":\"block\"", caps.Stdout);
    }

    [Fact]
    public void Debian_package_installs_prints_capabilities_and_removes()
    {
        string deb = ShippedProducts.DebianPackage();
        var info = ShippedProducts.Run("dpkg-deb", ["--info", deb], TimeSpan.FromMinutes(1));
        Assert.True(info.ExitCode == 0, info.Output);
        Assert.Contains("Package: sharpvhost", info.Stdout);
        var contents = ShippedProducts.Run("dpkg-deb", ["--contents", deb], TimeSpan.FromMinutes(1)).Stdout;
        output.WriteLine(contents);
        Assert.Contains("./usr/bin/sharpvhost", contents);
        Assert.Contains("./usr/share/man/man1/sharpvhost.1.gz", contents);
        Assert.Contains("./usr/share/doc/sharpvhost/copyright", contents);
        Assert.DoesNotContain(".dll", contents); // the native binary: no managed assemblies, no runtime needed

        Tools.Require("dpkg", "dpkg");
        var install = ShippedProducts.Run("dpkg", ["-i", deb], TimeSpan.FromMinutes(2));
        Assert.True(install.ExitCode == 0, "dpkg -i failed:\n" + install.Output);
        try
        {
            Assert.Equal(0, ShippedProducts.Run("dpkg", ["-s", "sharpvhost"], TimeSpan.FromMinutes(1)).ExitCode);
            // QEMU's convention is a program per device type: the one binary dispatches on its name.
            var caps = ShippedProducts.Run("/usr/bin/sharpvhost-blk", ["--print-capabilities"], TimeSpan.FromMinutes(1));
            output.WriteLine("sharpvhost-blk --print-capabilities: " + caps.Output);
            Assert.True(caps.ExitCode == 0, caps.Output);
            Assert.Contains("\"type\":\"block\"", caps.Stdout);
            // Every descriptor QEMU and libvirt discover names an installed binary of its own type.
            var descriptors = Directory.GetFiles("/usr/share/qemu/vhost-user", "*sharpvhost*.json");
            Assert.Equal(2, descriptors.Length);
            foreach (var file in descriptors)
            {
                using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file));
                string binary = json.RootElement.GetProperty("binary").GetString()!;
                string type = json.RootElement.GetProperty("type").GetString()!;
                var answer = ShippedProducts.Run(binary, ["--print-capabilities"], TimeSpan.FromMinutes(1));
                Assert.True(answer.ExitCode == 0, $"{file}: {binary}: {answer.Output}");
                Assert.Contains($"\"type\":\"{(type == "block" ? "block" : "net")}\"", answer.Stdout);
            }
            Assert.True(File.Exists("/lib/systemd/system/sharpvhost-blk@.service"), "the package carries no systemd units");
            // Without the .NET SDK on PATH or DOTNET_ROOT: nothing but the native binary runs.
            var bare = ShippedProducts.Run("/usr/bin/sharpvhost", ["net", "--print-capabilities"], TimeSpan.FromMinutes(1),
                environment: new Dictionary<string, string?> { ["PATH"] = "/usr/bin:/bin", ["DOTNET_ROOT"] = "/nonexistent", ["DOTNET_HOST_PATH"] = null });
            Assert.True(bare.ExitCode == 0, bare.Output);
            Assert.Contains("\"type\":\"net\"", bare.Stdout);
        }
        finally
        {
            var remove = ShippedProducts.Run("dpkg", ["-r", "sharpvhost"], TimeSpan.FromMinutes(2));
            Assert.True(remove.ExitCode == 0, "dpkg -r failed:\n" + remove.Output);
        }
        Assert.False(File.Exists("/usr/bin/sharpvhost"), "dpkg -r left /usr/bin/sharpvhost");
        Assert.False(File.Exists("/usr/share/man/man1/sharpvhost.1.gz"), "dpkg -r left the man page");
    }

    public void Dispose() => _dir.Dispose();
}
