namespace SharpVhost.Integration.Tests.Support;

/// <summary>
/// A per-test scratch directory, removed on dispose. Kept short and under /tmp because Unix
/// socket paths are limited to 107 bytes.
/// </summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        var root = Directory.Exists("/tmp") ? "/tmp" : System.IO.Path.GetTempPath();
        Path = System.IO.Path.Combine(root, "sv-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { } // a process we started may still be closing a file; the OS cleans /tmp
        catch (UnauthorizedAccessException) { }
    }
}
