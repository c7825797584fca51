using StatsCache.Cache;

namespace StatsCache.Grains.Tests;

public sealed class MonotonicTests
{
    [Fact]
    public void RaiseNeverMovesBackwards()
    {
        long value = 10;
        Monotonic.Raise(ref value, 5);
        Assert.Equal(10, value);
        Monotonic.Raise(ref value, 12);
        Assert.Equal(12, value);
    }

    [Fact]
    public void ConcurrentRaisesEndAtTheLargest()
    {
        long value = 0;
        Parallel.For(0, 100_000, i => Monotonic.Raise(ref value, i % 2 == 0 ? i : 100_000 - i));
        Assert.Equal(99_999, value);
    }
}
