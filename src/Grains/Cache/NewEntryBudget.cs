namespace StatsCache.Cache;

/// <summary>
/// One caller's budget of reads that add an entry (and so start a load): a token bucket of
/// <see cref="DashboardCacheOptions.NewEntryBurst"/> tokens filling at
/// <see cref="DashboardCacheOptions.NewEntriesPerSecond"/>. Lives in the caller's grain, so it holds across
/// every web host of the cluster; used on the grain's scheduler only, so no locks.
/// </summary>
internal sealed class NewEntryBudget(DashboardCacheOptions options, TimeProvider time)
{
    private double _tokens = options.NewEntryBurst;
    private long _filledAt = time.GetTimestamp();

    /// <summary>Takes a token if one is there; <see cref="Return"/> gives it back when the read added no entry.</summary>
    public bool TryTake()
    {
        Fill();
        if (_tokens < 1)
        {
            return false;
        }

        _tokens--;
        return true;
    }

    public void Return() => _tokens = Math.Min(_tokens + 1, options.NewEntryBurst);

    /// <summary>How long until a token is there again (zero when one is).</summary>
    public TimeSpan TimeToNextToken()
    {
        Fill();
        return _tokens >= 1 ? TimeSpan.Zero : TimeSpan.FromSeconds((1 - _tokens) / options.NewEntriesPerSecond);
    }

    private void Fill()
    {
        var now = time.GetTimestamp();
        _tokens = Math.Min(_tokens + (time.GetElapsedTime(_filledAt, now).TotalSeconds * options.NewEntriesPerSecond), options.NewEntryBurst);
        _filledAt = now;
    }
}
