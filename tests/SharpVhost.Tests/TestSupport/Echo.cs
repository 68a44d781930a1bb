using SharpVhost.Virtio;

namespace SharpVhost.Tests.TestSupport;

/// <summary>A tiny device for round-trip tests: reads every readable byte and writes them back transformed.</summary>
public static class Echo
{
    public static byte Transform(byte b) => (byte)(b ^ 0x5A);

    /// <summary>Copies min(readable, writable) bytes, transformed, into the writable segments; returns bytes written.</summary>
    public static uint Serve(DescriptorChain chain)
    {
        var input = new byte[chain.ReadableBytes];
        int got = chain.CopyFromReadable(0, input);
        if (got != input.Length) throw new InvalidOperationException("short read");
        int n = (int)Math.Min(chain.ReadableBytes, chain.WritableBytes);
        var output = new byte[n];
        for (int i = 0; i < n; i++) output[i] = Transform(input[i]);
        return (uint)chain.CopyToWritable(0, output);
    }

    public static TheoryData<MetadataAccess> Accesses => new() { MetadataAccess.Direct, MetadataAccess.Checked };
}
