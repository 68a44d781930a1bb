using SharpVhost.Devices.Block;
using SharpVhost.Tests.Backend;
using SharpVhost.VhostUser.Backend;

namespace SharpVhost.Tests.Hostile;

/// <summary>Open fds and memfd mappings of this process (the backend runs in it).</summary>
internal readonly record struct ResourceCount(int Fds, int MemfdMappings)
{
    public static ResourceCount Now()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        // The runtime keeps every assembly it loads open (lazily, for good): those are not the backend's.
        int fds = FdTargets().Count(t => !t.EndsWith(".dll", StringComparison.Ordinal));
        // The runtime's own W^X double mapping uses a memfd too; only guest-memory memfds count here.
        int maps = File.ReadLines("/proc/self/maps").Count(l => l.Contains("/memfd:") && !l.Contains("doublemapper"));
        return new ResourceCount(fds, maps);
    }

    /// <summary>The count once it stopped moving (the server closes a connection just after its session ends).</summary>
    public static ResourceCount Settled()
    {
        var last = Now();
        for (int i = 0; i < 100; i++)
        {
            Thread.Sleep(20);
            var next = Now();
            if (next == last) return next;
            last = next;
        }
        return last;
    }

    /// <summary>Waits (bounded) for the count to come back to <paramref name="baseline"/>, then asserts it did.</summary>
    public static void AssertBackTo(ResourceCount baseline)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        var now = Now();
        while (now != baseline && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(20);
            now = Now();
        }
        if (now != baseline)
            Assert.Fail($"{baseline} before, {now} after; fds now: {string.Join(", ", FdTargets().Where(t => !t.EndsWith(".dll", StringComparison.Ordinal)))}");
    }

    /// <summary>What each open fd is (for the failure message).</summary>
    public static IEnumerable<string> FdTargets()
    {
        foreach (var entry in Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try { target = new FileInfo(entry).LinkTarget; } catch (IOException) { continue; }
            yield return $"{Path.GetFileName(entry)}={target}";
        }
    }
}

/// <summary>
/// Runs one attack against a fresh backend server the way the suite requires: the attack itself
/// asserts the refusal; afterwards the server must serve a well-behaved frontend correctly, and the
/// process must hold no more fds or memfd mappings than before the attack.
/// </summary>
internal static class Attack
{
    public static void Run(Action<HostileFrontend> attack, int queues = 2, Action<TestServer>? afterwards = null, BackendOptions? options = null)
        => Run((_, hostile) => attack(hostile), queues, afterwards, options);

    /// <summary>As above, for attacks that open further connections of their own (<see cref="TestServer.ConnectRaw"/>).</summary>
    public static void Run(Action<TestServer, HostileFrontend> attack, int queues = 2, Action<TestServer>? afterwards = null, BackendOptions? options = null)
    {
        using var server = TestServer.Ram(queues, options: options);
        ResourceCount baseline = default;
        // Round 0 warms up whatever the runtime opens lazily on these code paths; round 1 is measured.
        for (int round = 0; round < 2; round++)
        {
            if (round == 1) baseline = ResourceCount.Settled();
            using (var hostile = HostileFrontend.Connect(server)) attack(server, hostile);
            server.WaitAllSessionsEnded();
            Assert.Null(server.Failure);
            ServeWell(server, queues, round);
            server.WaitAllSessionsEnded();
        }
        ResourceCount.AssertBackTo(baseline);
        Assert.Null(server.Failure);
        Assert.Empty(server.Log.ConnectionFailures);
        afterwards?.Invoke(server);
    }

    /// <summary>Our real frontend library writes and reads back through every queue.</summary>
    public static void ServeWell(TestServer server, int queues, int seed)
    {
        server.NoteConnection();
        using var client = BlockClient.Connect(server.SocketPath, new BlockClientOptions { NumQueues = queues, QueueSize = 16, QueueDepth = 4, BufferBytes = 1 << 20 });
        Assert.Equal(queues, client.NumQueues);
        var buffers = Enumerable.Range(0, 2 * queues).Select(_ => client.AllocateBuffer(4096)).ToArray();
        for (int i = 0; i < buffers.Length; i++) buffers[i].Span.Fill((byte)(seed * 16 + i + 1));
        Assert.True(Task.WhenAll(buffers.Select((b, i) => client.WriteAsync(i * 4096L, b))).Wait(TestServer.Timeout));
        foreach (var b in buffers) b.Span.Clear();
        Assert.True(Task.WhenAll(buffers.Select((b, i) => client.ReadAsync(i * 4096L, b))).Wait(TestServer.Timeout));
        for (int i = 0; i < buffers.Length; i++) Assert.True(buffers[i].Span.IndexOfAnyExcept((byte)(seed * 16 + i + 1)) < 0, $"buffer {i} read back wrong");
    }
}
