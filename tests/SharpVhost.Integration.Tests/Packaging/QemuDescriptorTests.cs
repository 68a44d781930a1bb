using System.Diagnostics;
using System.Text.Json;
using SharpVhost.Integration.Tests.Peers;
using SharpVhost.Integration.Tests.Support;

namespace SharpVhost.Integration.Tests.Packaging;

/// <summary>
/// QEMU's backend program conventions: the JSON descriptors in packaging/qemu conform to
/// @VhostUserBackend, and the binary each names, run by that name (a symlink to sharpvhost),
/// answers --print-capabilities with a conforming @VHostUserBackendCapabilities of the same type,
/// whatever other (even invalid) options come with it.
/// </summary>
public sealed class QemuDescriptorTests
{
    public static TheoryData<string> Descriptors() => new(Directory.GetFiles(RepositoryFiles.Get("packaging", "qemu"), "*.json").Select(Path.GetFileName)!);

    [Theory]
    [MemberData(nameof(Descriptors))]
    public void Descriptor_conforms_and_its_binary_reports_the_same_type(string file)
    {
        using var descriptor = JsonDocument.Parse(File.ReadAllText(RepositoryFiles.Get("packaging", "qemu", file)));
        var errors = VhostUserSchema.CheckDescriptor(descriptor.RootElement);
        Assert.True(errors.Count == 0, $"{file}: {string.Join("; ", errors)}");
        Assert.Matches(@"^\d\d-", file); // the schema's advice: a double-digit prefix orders the files

        using var temp = new TempDirectory();
        var binary = descriptor.RootElement.GetProperty("binary").GetString()!;
        // Garbage options must not stop it: capabilities come before any other option is validated.
        var (exit, stdout, stderr) = RunAs(temp, Path.GetFileName(binary), "--num-queues", "not-a-number", "--no-such-option", "--print-capabilities");
        Assert.True(exit == 0, $"{binary} --print-capabilities exited {exit}: {stderr}");
        using var capabilities = JsonDocument.Parse(stdout);
        errors = VhostUserSchema.CheckCapabilities(capabilities.RootElement);
        Assert.True(errors.Count == 0, $"{binary} --print-capabilities: {stdout}: {string.Join("; ", errors)}");
        Assert.Equal(descriptor.RootElement.GetProperty("type").GetString(), capabilities.RootElement.GetProperty("type").GetString());
    }

    [Fact]
    public void Schema_check_accepts_qemus_own_descriptor_and_rejects_broken_ones()
    {
        // Debian's QEMU ships a descriptor: the encoded schema must accept what QEMU itself installs.
        var shipped = Directory.GetFiles("/usr/share/qemu/vhost-user", "*.json");
        Assert.NotEmpty(shipped); // qemu-system-common (scripts/install-deps.sh) ships 50-qemu-virtiofsd.json
        foreach (var file in shipped)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            Assert.Empty(VhostUserSchema.CheckDescriptor(doc.RootElement));
        }
        string[] broken =
        [
            """{"description":"x","type":"disk","binary":"/usr/bin/x"}""",            // not a backend type
            """{"description":"x","type":"block","binary":"x"}""",                   // relative binary
            """{"type":"block","binary":"/usr/bin/x"}""",                            // no description
            """{"description":"x","type":"block","binary":"/usr/bin/x","a":1}""",    // unknown member
        ];
        foreach (var json in broken)
        {
            using var doc = JsonDocument.Parse(json);
            Assert.NotEmpty(VhostUserSchema.CheckDescriptor(doc.RootElement));
        }
        using var badFeature = JsonDocument.Parse("""{"type":"block","features":["discard"]}""");
        Assert.NotEmpty(VhostUserSchema.CheckCapabilities(badFeature.RootElement));
    }

    [Fact]
    public void Install_links_script_makes_names_that_run_the_backends()
    {
        using var temp = new TempDirectory();
        var program = Apphost();
        var run = Process.Start(new ProcessStartInfo("bash", [RepositoryFiles.Get("scripts", "install-links.sh"), program, temp.Path]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        run.WaitForExit();
        Assert.True(run.ExitCode == 0, run.StandardError.ReadToEnd());
        foreach (var (name, type) in new[] { ("sharpvhost-blk", "block"), ("sharpvhost-net", "net") })
        {
            var link = Path.Combine(temp.Path, name);
            Assert.Equal(program, File.ResolveLinkTarget(link, returnFinalTarget: true)!.FullName);
            var (exit, stdout, _) = Run(link, "--print-capabilities");
            Assert.Equal(0, exit);
            using var doc = JsonDocument.Parse(stdout);
            Assert.Equal(type, doc.RootElement.GetProperty("type").GetString());
        }
    }

    /// <summary>Runs the CLI through a symlink called <paramref name="name"/>, as QEMU or libvirt would run an installed backend.</summary>
    internal static (int Exit, string Stdout, string Stderr) RunAs(TempDirectory temp, string name, params string[] arguments)
    {
        var link = temp.File(name);
        if (!File.Exists(link)) File.CreateSymbolicLink(link, Apphost());
        return Run(link, arguments);
    }

    /// <summary>The native launcher next to the tests: argv[0] dispatch needs a program, not `dotnet sharpvhost.dll`.</summary>
    internal static string Apphost()
    {
        var (program, prefix) = SharpVhostCli.Command();
        if (prefix.Count != 0) throw new InvalidOperationException($"no sharpvhost apphost next to the tests ({program} {string.Join(" ", prefix)})");
        return program;
    }

    private static (int Exit, string Stdout, string Stderr) Run(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30))) { process.Kill(); throw new TimeoutException($"{program} did not exit"); }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
