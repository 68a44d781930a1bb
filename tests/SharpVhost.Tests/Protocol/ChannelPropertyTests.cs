using CsCheck;
using SharpVhost.Interop;
using SharpVhost.VhostUser.Protocol;
using SharpVhost.VhostUser.Transport;

namespace SharpVhost.Tests.Protocol;

/// <summary>Random message streams with random fds through a real socket: the receiving channel only
/// ever reports protocol errors, keeps going after rejected messages, and leaks no fd.</summary>
[Collection(FdCountingCollection.Name)]
public class ChannelPropertyTests
{
    private static readonly Gen<(byte[] Bytes, int Fds)> Chunk =
        Gen.Select(Gen.UInt[0, 42], Gen.UInt[0, 15], Gen.Byte.Array[0, 80], Gen.Int[0, 10], Gen.Int[0, 3])
            .Select((request, flags, payload, fds, sizeMode) =>
            {
                uint size = sizeMode switch
                {
                    0 => (uint)payload.Length,
                    1 => (uint)payload.Length + 4,          // promises more than it sends
                    2 => (uint)Math.Max(0, payload.Length - 4),
                    _ => (uint)payload.Length,
                };
                return (FdTestSupport.RawMessage(request, flags, size, payload), fds);
            });

    [Fact]
    public void RandomStreamsGiveOnlyProtocolErrorsAndLeakNothing()
    {
        using var devNull = File.OpenHandle("/dev/null");
        int devNullFd = (int)devNull.DangerousGetHandle();
        FdTestSupport.AssertNoFdLeak(() =>
            Chunk.List[1, 6].Sample(chunks =>
            {
                var (front, back) = UnixSockets.CreatePair();
                using var channel = new VhostUserChannel(back, VhostUserRole.BackEnd);
                using (front)
                {
                    foreach (var (bytes, fds) in chunks)
                        UnixSockets.SendWithFds(front, bytes, Enumerable.Repeat(devNullFd, fds).ToArray());
                    front.Shutdown(System.Net.Sockets.SocketShutdown.Send);
                    for (int i = 0; i < 20; i++)
                    {
                        try
                        {
                            using var msg = channel.Receive();
                            if (msg is null) break;
                        }
                        catch (VhostUserMessageRejectedException)
                        {
                            // Stream still in step: keep reading.
                        }
                        catch (VhostUserProtocolException)
                        {
                            break;
                        }
                    }
                }
            }, iter: 1000));
    }
}
