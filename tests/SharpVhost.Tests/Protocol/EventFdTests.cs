using SharpVhost.Interop;

namespace SharpVhost.Tests.Protocol;

public sealed class EventFdTests
{
    /// <summary>
    /// A frontend may pass any fd as a kick. A short read from one that is not an eventfd is reported as
    /// such (it was logged as "eventfd read failed: Success (errno 0)").
    /// </summary>
    [Fact]
    public void A_short_read_says_the_fd_is_not_an_eventfd()
    {
        var memfd = FileDescriptors.CreateMemfd("not-an-eventfd", 3);
        int raw = (int)memfd.DangerousGetHandle();
        memfd.SetHandleAsInvalid(); // the EventFd owns it now
        using var kick = EventFd.Adopt(raw);
        var e = Assert.Throws<IOException>(() => kick.TryConsume());
        Assert.Contains("returned 3 bytes", e.Message);
        Assert.Contains("not an eventfd", e.Message);
    }
}
