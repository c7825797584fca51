namespace StatsCache.Cache;

/// <summary>Lock-free "only forwards" updates of a <see langword="long"/> many threads write.</summary>
public static class Monotonic
{
    /// <summary>Sets <paramref name="location"/> to <paramref name="value"/> unless it already holds as much or more.</summary>
    public static void Raise(ref long location, long value)
    {
        var held = Volatile.Read(ref location);
        while (held < value && Interlocked.CompareExchange(ref location, value, held) is var seen && seen != held)
        {
            held = seen;
        }
    }
}
