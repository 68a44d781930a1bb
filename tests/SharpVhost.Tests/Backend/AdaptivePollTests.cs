using System.Diagnostics;
using SharpVhost.VhostUser.Backend;

namespace SharpVhost.Tests.Backend;

public sealed class AdaptivePollTests
{
    private static readonly TimeSpan Max = TimeSpan.FromMicroseconds(32);
    private static long Ticks(double microseconds) => (long)(microseconds * Stopwatch.Frequency / 1_000_000);

    [Fact]
    public void StartsAtTheMaximum()
        => Assert.Equal(Ticks(32), new AdaptivePoll(Max).WindowTicks, tolerance: 1);

    [Fact]
    public void ADriverThatStaysAwayShrinksTheWindowToNothingThenOneThatComesBackSoonGrowsItAgain()
    {
        var poll = new AdaptivePoll(Max);
        for (int i = 0; i < 5; i++) poll.Slept(Ticks(10_000)); // an idle queue: 32 -> 16 -> 8 -> 4 -> 0
        Assert.Equal(0, poll.WindowTicks);
        poll.Slept(Ticks(1_000));
        Assert.Equal(0, poll.WindowTicks); // still too long to be worth polling for

        poll.Slept(Ticks(20)); // the driver came back 20 us after the ring ran dry: polling would have caught it
        Assert.Equal(Ticks(AdaptivePoll.Initial.TotalMicroseconds), poll.WindowTicks, tolerance: 1);
        long previous = poll.WindowTicks;
        while (poll.WindowTicks < Ticks(32) - 1)
        {
            poll.Slept(Ticks(5)); // window plus sleep still within the maximum: grow, doubling
            Assert.True(poll.WindowTicks > previous);
            previous = poll.WindowTicks;
        }
        Assert.Equal(Ticks(32), poll.WindowTicks, tolerance: 1);
        poll.Slept(Ticks(1)); // a whole maximum window polled in vain: the driver takes longer, shrink
        Assert.Equal(Ticks(16), poll.WindowTicks, tolerance: 1);
        poll.Slept(Ticks(10));
        Assert.Equal(Ticks(32), poll.WindowTicks, tolerance: 1); // grows again, never past the maximum
    }

    [Fact]
    public void ZeroMeansNeverPoll()
    {
        var poll = new AdaptivePoll(TimeSpan.Zero);
        Assert.Equal(0, poll.WindowTicks);
        poll.Slept(0);
        Assert.Equal(0, poll.WindowTicks);
    }
}
