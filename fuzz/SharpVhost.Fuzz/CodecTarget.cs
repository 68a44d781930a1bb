using System.Buffers.Binary;
using SharpVhost.VhostUser.Protocol;

namespace SharpVhost.Fuzz;

/// <summary>
/// The vhost-user message decoder (<see cref="VhostUserCodec.TryDecode"/>) and every payload parser
/// behind it, as a stream of messages in one direction of one channel.
/// <para>Input: byte 0 chooses the channel (bit 0: back-end request channel), the direction
/// (bit 1: replies) and how many placeholder fds travel with each message (bits 2-5); the rest is
/// the byte stream.</para>
/// <para>Oracles: a decoded message is exactly header plus payload long; a payload that parses writes
/// back to bytes that parse to the same value (parse, write, parse round trip).</para>
/// </summary>
public sealed class CodecTarget : IFuzzTarget
{
    public string Name => "codec";
    public string Description => "vhost-user message decoder and payload parsers (both channels, both directions)";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return;
        byte control = input[0];
        var channel = (control & 1) != 0 ? VhostUserChannelKind.BackendRequests : VhostUserChannelKind.Main;
        bool replies = (control & 2) != 0;
        int fdCount = (control >> 2) & 0xF;
        Span<int> fds = stackalloc int[fdCount];
        fds.Fill(-1); // placeholders: never closed, never mapped

        var stream = input[1..];
        for (int messages = 0; messages < 256 && !stream.IsEmpty; messages++)
        {
            VhostUserMessage? message;
            int consumed;
            try
            {
                if (!VhostUserCodec.TryDecode(stream, fds, channel, replies, out message, out consumed)) return;
            }
            catch (VhostUserProtocolException)
            {
                return; // a rejected header ends the stream, a rejected body too (the caller decides)
            }
            using (message)
            {
                var header = message!.Header;
                if (consumed != VhostUserHeader.WireSize + (int)header.Size || message.Payload.Length != (int)header.Size)
                    throw new FuzzCheckFailedException($"decoded {message} consumed {consumed} bytes for a {header.Size}-byte payload");
                if (message.Fds.Count != fdCount)
                    throw new FuzzCheckFailedException($"decoded {message} with {message.Fds.Count} fds, {fdCount} were given");
                ParseAsItsType(message);
            }
            stream = stream[consumed..];
        }
    }

    /// <summary>Parses the payload as the type its request id names, and round-trips it.</summary>
    private static void ParseAsItsType(VhostUserMessage m)
    {
        var payload = m.Payload;
        try
        {
            if (m.Channel == VhostUserChannelKind.BackendRequests)
            {
                if (m.IsReply) { RoundTrip<U64Payload>(payload); return; }
                switch (m.BackEndRequest)
                {
                    case BackEndRequest.IotlbMsg: RoundTrip<IotlbMessage>(payload); break;
                    case BackEndRequest.VringHostNotifierMsg: RoundTrip<VringArea>(payload); break;
                    case BackEndRequest.VringCall or BackEndRequest.VringErr: RoundTrip<VringState>(payload); break;
                }
                return;
            }
            if (m.IsReply && payload.Length == U64Payload.Size) RoundTrip<U64Payload>(payload);
            switch (m.FrontEndRequest)
            {
                case FrontEndRequest.SetMemTable: RoundTrip<MemoryTable>(payload); break;
                case FrontEndRequest.AddMemReg or FrontEndRequest.RemMemReg: RoundTrip<SingleMemoryRegion>(payload); break;
                case FrontEndRequest.SetVringAddr: RoundTrip<VringAddress>(payload); break;
                case FrontEndRequest.SetVringNum or FrontEndRequest.SetVringBase or FrontEndRequest.GetVringBase
                    or FrontEndRequest.SetVringEnable or FrontEndRequest.SetVringEndian or FrontEndRequest.VringKick:
                    RoundTrip<VringState>(payload); break;
                case FrontEndRequest.SetVringKick or FrontEndRequest.SetVringCall or FrontEndRequest.SetVringErr:
                    var vring = RoundTrip<VringFd>(payload);
                    if (!m.IsReply && vring.ExpectedFdCount != m.Fds.Count)
                        throw new FuzzCheckFailedException($"{m} passed the fd rule with {m.Fds.Count} fds but its payload wants {vring.ExpectedFdCount}");
                    break;
                case FrontEndRequest.SetLogBase when payload.Length == LogDescription.Size: RoundTrip<LogDescription>(payload); break;
                case FrontEndRequest.IotlbMsg: RoundTrip<IotlbMessage>(payload); break;
                case FrontEndRequest.GetConfig or FrontEndRequest.SetConfig when payload.Length > 0: RoundTrip<ConfigSpace>(payload); break;
                case FrontEndRequest.GetInflightFd or FrontEndRequest.SetInflightFd: RoundTrip<InflightDescription>(payload); break;
                case FrontEndRequest.SetFeatures or FrontEndRequest.SetProtocolFeatures or FrontEndRequest.SetStatus
                    or FrontEndRequest.SendRarp or FrontEndRequest.NetSetMtu:
                    RoundTrip<U64Payload>(payload); break;
            }
        }
        catch (VhostUserProtocolException)
        {
            // A field-level rejection (the codec checks shapes; parsers check fields).
        }
    }

    private static T RoundTrip<T>(ReadOnlySpan<byte> payload) where T : struct, IVhostUserPayload<T>
    {
        var first = T.Parse(payload);
        var bytes = new byte[first.WireSize];
        first.Write(bytes);
        var second = T.Parse(bytes);
        if (!first.Equals(second))
            throw new FuzzCheckFailedException($"{typeof(T).Name} round trip changed {first} into {second}");
        return first;
    }

    public IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        // Requests on the main socket (what a front-end sends), one file per message kind, then a whole
        // session's opening as one stream.
        foreach (var r in SeedMessages.FrontEndRequests())
            yield return ($"main-request-{r.Name}", [(byte)(r.Fds << 2), .. SeedMessages.Encode((uint)r.Id, r.Flags, r.Payload)]);
        yield return ("main-request-opening", [0, .. SeedMessages.OpeningStream()]);

        // Replies on the main socket (what a back-end answers).
        yield return ("main-reply-u64", [2, .. SeedMessages.Encode((uint)FrontEndRequest.GetFeatures, VhostUserHeaderFlags.Reply, U64(0x1_4000_0000))]);
        yield return ("main-reply-vring-base", [2, .. SeedMessages.Encode((uint)FrontEndRequest.GetVringBase, VhostUserHeaderFlags.Reply, SeedMessages.Bytes(new VringState(0, 7)))]);
        yield return ("main-reply-config", [2, .. SeedMessages.Encode((uint)FrontEndRequest.GetConfig, VhostUserHeaderFlags.Reply, SeedMessages.Bytes(new ConfigSpace(0, ConfigSpaceFlags.Writable, new byte[8])))]);

        // Requests on the back-end request channel (what a back-end sends the front-end).
        yield return ("backend-request-iotlb-miss", [1, .. SeedMessages.Encode((uint)BackEndRequest.IotlbMsg, VhostUserHeaderFlags.NeedReply, SeedMessages.Bytes(new IotlbMessage(0x1000, 0, 0, IotlbPermission.ReadOnly, IotlbMessageType.Miss)))]);
        yield return ("backend-request-config-change", [1, .. SeedMessages.Encode((uint)BackEndRequest.ConfigChangeMsg, VhostUserHeaderFlags.None, [])]);
        yield return ("backend-request-host-notifier", [1 | (1 << 2), .. SeedMessages.Encode((uint)BackEndRequest.VringHostNotifierMsg, VhostUserHeaderFlags.None, SeedMessages.Bytes(new VringArea(0, false, 4096, 0)))]);
        yield return ("backend-reply-ack", [3, .. SeedMessages.Encode((uint)BackEndRequest.IotlbMsg, VhostUserHeaderFlags.Reply, U64(0))]);
    }

    private static byte[] U64(ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        return b;
    }
}
