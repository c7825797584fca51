using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using StatsCache.Cache;

namespace StatsCache.WebHost.NearCache;

/// <summary>
/// The web host's near-cache of grain answers: a read the grain answered is kept with a lease
/// (<see cref="NearCacheOptions.LeaseDuration"/>) during which the grain pushes every change of that answer to the web
/// host's <see cref="DashboardWatcher"/>, which applies it here. A read is answered from memory while the lease
/// holds, the grain's refresh is not due and the answer is not stale, so it is the answer the grain would give: the same
/// bytes, ETag, asOf and stale flag, and Cache-Control counting down to the same refresh. Versions keep an older answer
/// or push from overwriting a newer one. Keys are the caller's (user-scoped views) or the site's and role's
/// (site-scoped views), reached only after the API's role and parameter checks.
/// </summary>
public sealed class DashboardNearCache
{
    private readonly ConcurrentDictionary<NearKey, NearEntry> _entries = new();
    private readonly NearCacheOptions _options;
    private readonly TimeProvider _time;
    private readonly Counter<long> _hits;
    private readonly Counter<long> _misses;
    private int _evicting;

    public DashboardNearCache(IOptions<NearCacheOptions> options, TimeProvider time, IMeterFactory meters)
    {
        _options = options.Value;
        _time = time;
        var meter = meters.Create(DashboardMetrics.MeterName);
        _hits = meter.CreateCounter<long>("statscache.nearcache.hits", "{read}", "Reads this web host answered from its near-cache, without a grain call.");
        _misses = meter.CreateCounter<long>("statscache.nearcache.misses", "{read}", "Reads that called the grain (not held, lease or refresh due, stale, or refresh=true).");
        meter.CreateObservableUpDownCounter("statscache.nearcache.entries", () => _entries.Count, "{entry}", "Entries in this web host's near-cache.");
    }

    public bool IsEnabled => _options.IsEnabled;

    public TimeSpan LeaseDuration => _options.LeaseDuration;

    /// <summary>When a read that will watch its entry starts (its lease runs from here): pass it to <see cref="Store"/>.</summary>
    public long ReadStarting() => _time.GetTimestamp();

    /// <summary>The held answer of <paramref name="key"/>, when it is the one the grain would give now.</summary>
    public bool TryGet(in NearKey key, out DashboardSnapshot snapshot, out TimeSpan nextRefreshIn)
    {
        var now = _time.GetTimestamp();
        if (_entries.TryGetValue(key, out var entry) && entry.Result is { Snapshot: { } held, Stale: false }
            && now < entry.LeaseUntil && now < entry.RefreshAt
            && _time.GetUtcNow() < held.AsOf + entry.Ttl) // past its TTL the grain would call it stale (a slow refresh ends later)
        {
            entry.LastRead = now;
            snapshot = held;
            nextRefreshIn = _time.GetElapsedTime(now, entry.RefreshAt);
            _hits.Add(1);
            return true;
        }

        _misses.Add(1);
        snapshot = null!;
        nextRefreshIn = default;
        return false;
    }

    /// <summary>
    /// Keeps the grain's answer to a read of a view with <paramref name="ttl"/> that started at
    /// <paramref name="readStarted"/> (a timestamp) and watched the entry: the lease runs from then, so it ends no
    /// later than the grain's.
    /// </summary>
    public void Store(in NearKey key, DashboardResult result, TimeSpan ttl, long readStarted)
    {
        var now = _time.GetTimestamp();
        var state = (result, ttl, now, lease: readStarted + Ticks(_options.LeaseDuration), refreshAt: now + Ticks(result.NextRefreshIn));
        _entries.AddOrUpdate(
            key,
            static (_, a) => new NearEntry(a.result, a.lease, a.refreshAt, a.ttl) { LastRead = a.now },
            static (_, held, a) => a.result.Version < held.Result.Version
                ? held with { LeaseUntil = Math.Max(held.LeaseUntil, a.lease), Ttl = a.ttl } // a newer push came first: keep it, renewed
                : new NearEntry(a.result, a.lease, a.refreshAt, a.ttl) { LastRead = a.now },
            state);
        if (_entries.Count > _options.MaxEntries)
        {
            Evict();
        }
    }

    /// <summary>A grain's push: the entry's new answer, or null when it is gone. An older version never overwrites a newer one.</summary>
    public void Apply(in NearKey key, DashboardResult? pushed)
    {
        if (pushed is not { } result)
        {
            // Gone from the grain: not answered from here again until a read has asked the grain.
            _entries.TryRemove(key, out _);
            return;
        }

        var now = _time.GetTimestamp();
        var refreshAt = now + Ticks(result.NextRefreshIn);
        _entries.AddOrUpdate(
            key,
            // A push before the read's own answer arrived: held, but answered only once that read has set the lease and TTL.
            static (_, a) => new NearEntry(a.result, 0, a.refreshAt, TimeSpan.Zero),
            static (_, held, a) => a.result.Version <= held.Result.Version
                ? held
                : held with { Result = a.result, RefreshAt = a.refreshAt },
            (result, refreshAt));
    }

    /// <summary>Drops everything: the grains that pushed here may have reactivated elsewhere, without this watcher.</summary>
    public void Clear() => _entries.Clear();

    private long Ticks(TimeSpan duration) => (long)(duration.TotalSeconds * _time.TimestampFrequency);

    // Over the cap: the least recently read tenth goes (one thread at a time; the others go on).
    private void Evict()
    {
        if (Interlocked.Exchange(ref _evicting, 1) == 1)
        {
            return;
        }

        try
        {
            foreach (var (key, _) in _entries.OrderBy(e => e.Value.LastRead).Take(Math.Max(1, _entries.Count / 10)).ToList())
            {
                _entries.TryRemove(key, out _);
            }
        }
        finally
        {
            Volatile.Write(ref _evicting, 0);
        }
    }

    /// <summary>
    /// The answer held for a key: until <see cref="LeaseUntil"/> the grain pushes its changes, at <see cref="RefreshAt"/> it
    /// reloads (timestamps); <see cref="Ttl"/> is the view's. <see cref="LastRead"/> orders eviction.
    /// </summary>
    private sealed record NearEntry(DashboardResult Result, long LeaseUntil, long RefreshAt, TimeSpan Ttl)
    {
        public long LastRead { get; set; }
    }
}

/// <summary>
/// A near-cache key: the caller's for user-scoped views (<paramref name="User"/> its id), the site's and role's for
/// site-scoped ones (<paramref name="User"/> zero, so every admin of the site shares the entry the site's grain pushes).
/// </summary>
public readonly record struct NearKey(long Site, string Role, long User, string View, string Parameters);
