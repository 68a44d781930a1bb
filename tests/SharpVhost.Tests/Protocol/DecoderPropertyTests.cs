using CsCheck;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.Tests.Protocol;

/// <summary>Whatever bytes arrive, the decoder either decodes, asks for more, or throws
/// <see cref="VhostUserProtocolException"/>; never anything else.</summary>
public class DecoderPropertyTests
{
    private static void DecodeAll(byte[] bytes, int fdCount)
    {
        // Placeholder fds (-1) stand in for real ones; closing them is a harmless no-op.
        int[] fds = Enumerable.Repeat(-1, fdCount).ToArray();
        foreach (var channel in new[] { VhostUserChannelKind.Main, VhostUserChannelKind.BackendRequests })
        {
            foreach (bool expectReply in new[] { false, true })
            {
                try
                {
                    if (VhostUserCodec.TryDecode(bytes, fds, channel, expectReply, out var message, out int consumed))
                    {
                        using (message)
                        {
                            Assert.InRange(consumed, 12, bytes.Length);
                            Assert.Equal(consumed - 12, message!.Payload.Length);
                            TryParseAsEverything(message.Payload);
                        }
                    }
                }
                catch (VhostUserProtocolException)
                {
                }
            }
        }
    }

    private static void TryParseAsEverything(ReadOnlySpan<byte> payload)
    {
        Swallow(payload, U64Payload.Parse);
        Swallow(payload, VringFd.Parse);
        Swallow(payload, VringState.Parse);
        Swallow(payload, VringAddress.Parse);
        Swallow(payload, MemoryTable.Parse);
        Swallow(payload, SingleMemoryRegion.Parse);
        Swallow(payload, LogDescription.Parse);
        Swallow(payload, InflightDescription.Parse);
        Swallow(payload, ConfigSpace.Parse);
        Swallow(payload, IotlbMessage.Parse);
        Swallow(payload, VringArea.Parse);
    }

    private delegate T Parser<T>(ReadOnlySpan<byte> payload);

    private static void Swallow<T>(ReadOnlySpan<byte> payload, Parser<T> parse)
    {
        try { parse(payload); }
        catch (VhostUserProtocolException) { }
    }

    [Fact]
    public void RandomBytesOnlyEverGiveProtocolErrors() =>
        Gen.Select(Gen.Byte.Array[0, 400], Gen.Int[0, 10])
            .Sample((bytes, fdCount) => DecodeAll(bytes, fdCount), iter: 20_000);

    [Fact]
    public void PlausibleHeadersWithRandomPayloadsOnlyEverGiveProtocolErrors() =>
        Gen.Select(Gen.UInt[0, 45], Gen.UInt[0, 15], Gen.Byte.Array[0, 300], Gen.Int[0, 10], Gen.Bool)
            .Sample((request, flags, payload, fdCount, honestSize) =>
            {
                uint size = honestSize ? (uint)payload.Length : (uint)payload.Length ^ 8;
                DecodeAll(FdTestSupport.RawMessage(request, flags, size, payload), fdCount);
            }, iter: 50_000);
}
