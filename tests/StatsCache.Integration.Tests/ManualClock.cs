namespace StatsCache.Integration.Tests;

/// <summary>A clock that moves only when told: timestamps in ticks of 100 ns, and the UTC time with them.</summary>
internal sealed class ManualClock : TimeProvider
{
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private long _now = 1_000_000;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _now;

    public override DateTimeOffset GetUtcNow() => Start + TimeSpan.FromTicks(_now);

    public void Advance(TimeSpan by) => _now += by.Ticks;
}
