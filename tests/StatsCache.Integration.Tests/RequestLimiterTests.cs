using Microsoft.Extensions.Options;
using StatsCache.WebHost.Auth;
using StatsCache.WebHost.Hosting;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The request limit's token buckets on a clock the test moves: the burst, the continuous refill up to the burst, the
/// Retry-After, one bucket per caller, and the sweep that drops only buckets that have filled up again.
/// (<see cref="LimitsTests"/> shows the limit through the real web host.)
/// </summary>
public sealed class RequestLimiterTests
{
    private static readonly Caller Alice = new(1, "client", 1);
    private static readonly Caller Bob = new(1, "client", 2);

    private readonly ManualClock _clock = new();
    private readonly RequestLimiter _limiter;

    public RequestLimiterTests() =>
        _limiter = new RequestLimiter(Options.Create(new RequestLimitOptions { RequestsPerSecond = 4, Burst = 3 }), _clock);

    [Fact]
    public void BurstIsAnsweredThenOneRequestPerToken()
    {
        TakeAll(Alice, 3);
        Assert.False(_limiter.TryTake(Alice, out var retryAfter));
        AssertWait(250, retryAfter);

        // The bucket fills continuously: a quarter of a token after 62.5 ms, so the wait is that much shorter.
        _clock.Advance(TimeSpan.FromMilliseconds(62.5));
        Assert.False(_limiter.TryTake(Alice, out retryAfter));
        AssertWait(187.5, retryAfter);

        _clock.Advance(TimeSpan.FromMilliseconds(187.5));
        Assert.True(_limiter.TryTake(Alice, out retryAfter));
        Assert.Equal(TimeSpan.Zero, retryAfter);
        Assert.False(_limiter.TryTake(Alice, out _));
    }

    [Fact]
    public void IdleTimeFillsTheBucketUpToTheBurstOnly()
    {
        TakeAll(Alice, 3);
        _clock.Advance(TimeSpan.FromHours(1));
        TakeAll(Alice, 3);
        Assert.False(_limiter.TryTake(Alice, out _));
    }

    [Fact]
    public void EachCallerHasABucketOfItsOwn()
    {
        TakeAll(Alice, 3);
        Assert.False(_limiter.TryTake(Alice, out _));
        TakeAll(Bob, 3);
        Assert.False(_limiter.TryTake(Bob, out _));
        Assert.True(_limiter.TryTake(new Caller(1, "admin", 1), out _), "Another role is another caller.");
        Assert.True(_limiter.TryTake(new Caller(2, "client", 1), out _), "Another site is another caller.");
    }

    [Fact]
    public void SweepDropsOnlyBucketsThatHaveFilledUp()
    {
        TakeAll(Alice, 3);
        TakeAll(Bob, 1);
        Assert.Equal(2, _limiter.Count);

        // Bob's one token is back after 250 ms; Alice's three after 750 ms.
        _clock.Advance(TimeSpan.FromMilliseconds(300));
        _limiter.Sweep();
        Assert.Equal(1, _limiter.Count);

        // Alice's bucket was kept, tokens taken and all: she has one token (and a fifth), not a new burst.
        TakeAll(Alice, 1);
        Assert.False(_limiter.TryTake(Alice, out var retryAfter));
        AssertWait(200, retryAfter);

        _clock.Advance(TimeSpan.FromSeconds(1));
        _limiter.Sweep();
        Assert.Equal(0, _limiter.Count);

        // A swept caller starts again with a full bucket.
        TakeAll(Alice, 3);
        Assert.False(_limiter.TryTake(Alice, out _));
    }

    private void TakeAll(Caller caller, int requests)
    {
        for (var i = 0; i < requests; i++)
        {
            Assert.True(_limiter.TryTake(caller, out _), $"Request {i + 1} of {requests} of {caller} was refused.");
        }
    }

    // The wait is computed in floating point: equal to the microsecond.
    private static void AssertWait(double milliseconds, TimeSpan retryAfter) => Assert.Equal(milliseconds, retryAfter.TotalMilliseconds, 0.001);
}
