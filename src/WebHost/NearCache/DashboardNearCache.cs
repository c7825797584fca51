using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using StatsCache.Cache;

namespace StatsCache.WebHost.NearCache;

/// <summary>
/// The web host's near-cache of grain answers: a read the grain answered is kept while the read's watch lasts
/// (<see cref="NearCacheOptions.WatchDuration"/>), during which the grain pushes every change of that answer to the web
/// host's <see cref="DashboardWatcher"/>, which applies it here. A read is answered from memory while the watch is in its
/// first half (the first read in the second half asks the grain, which renews it), the grain's silo was heard from within
/// <see cref="NearCacheOptions.LeaseDuration"/> (its heartbeat or its answer), the grain's refresh is not due and the
/// answer is not stale; so it is the answer the grain would give: the same bytes, ETag, asOf and stale flag, and
/// Cache-Control counting down to the same refresh. Versions keep an older answer or push from overwriting a newer one.
/// Keys are the caller's (user-scoped views) or the site's and role's (site-scoped views), reached only after the API's
/// role and parameter checks.
/// </summary>
public sealed class DashboardNearCache
{
    private readonly ConcurrentDictionary<NearKey, NearEntry> _entries = new();
    private readonly ConcurrentDictionary<SiloAddress, SiloLease> _silos = new();
    private readonly NearCacheOptions _options;
    private readonly TimeProvider _time;
    private readonly long _leaseTicks;
    private readonly Counter<long> _hits;
    private readonly Counter<long> _misses;
    private int _evicting;

    public DashboardNearCache(IOptions<NearCacheOptions> options, TimeProvider time, IMeterFactory meters)
    {
        _options = options.Value;
        _time = time;
        _leaseTicks = Ticks(_options.LeaseDuration);
        var meter = meters.Create(DashboardMetrics.MeterName);
        _hits = meter.CreateCounter<long>("statscache.nearcache.hits", "{read}", "Reads this web host answered from its near-cache, without a grain call.");
        _misses = meter.CreateCounter<long>("statscache.nearcache.misses", "{read}", "Reads that called the grain (not held, watch to renew, silo not heard from, refresh due, stale, or refresh=true).");
        meter.CreateObservableUpDownCounter("statscache.nearcache.entries", () => _entries.Count, "{entry}", "Entries in this web host's near-cache.");
    }

    public bool IsEnabled => _options.IsEnabled;

    public TimeSpan WatchDuration => _options.WatchDuration;

    /// <summary>When a read that will watch its entry starts (its watch runs from here): pass it to <see cref="Store"/>.</summary>
    public long ReadStarting() => _time.GetTimestamp();

    /// <summary>The held answer of <paramref name="key"/>, when it is the one the grain would give now.</summary>
    public bool TryGet(in NearKey key, out DashboardSnapshot snapshot, out TimeSpan nextRefreshIn)
    {
        var now = _time.GetTimestamp();
        if (_entries.TryGetValue(key, out var entry) && entry.Result is { Snapshot: { } held, Stale: false }
            && now < entry.RenewAt && now < entry.RefreshAt
            && entry.Silo is { } silo && now < silo.HeardAt + _leaseTicks
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
    /// <paramref name="readStarted"/> (a timestamp) and watched the entry: the watch runs from then, so it ends no later
    /// than the grain's, and the answer proves its silo was alive then.
    /// </summary>
    public void Store(in NearKey key, DashboardResult result, TimeSpan ttl, long readStarted)
    {
        var silo = result.Silo is { } address ? Heard(address, readStarted) : null;
        var now = _time.GetTimestamp();
        var state = (result, ttl, now, silo, renewAt: readStarted + (Ticks(_options.WatchDuration) / 2), refreshAt: now + Ticks(result.NextRefreshIn));
        _entries.AddOrUpdate(
            key,
            static (_, a) => new NearEntry(a.result, a.renewAt, a.refreshAt, a.ttl, a.silo) { LastRead = a.now },
            static (_, held, a) => a.result.Version < held.Result.Version
                ? held with { RenewAt = Math.Max(held.RenewAt, a.renewAt), Ttl = a.ttl, Silo = a.silo } // a newer push came first: keep it, renewed
                : new NearEntry(a.result, a.renewAt, a.refreshAt, a.ttl, a.silo) { LastRead = a.now },
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
            // A push before the read's own answer arrived: held, but answered only once that read has set the watch, silo and TTL.
            static (_, a) => new NearEntry(a.result, 0, a.refreshAt, TimeSpan.Zero, null),
            static (_, held, a) => a.result.Version <= held.Result.Version
                ? held
                : held with { Result = a.result, RefreshAt = a.refreshAt },
            (result, refreshAt));
    }

    /// <summary><paramref name="silo"/> was alive at <paramref name="at"/> (a timestamp; now when not given): its entries' answers hold another lease.</summary>
    public SiloLease Heard(SiloAddress silo, long? at = null)
    {
        var lease = _silos.GetOrAdd(silo, static _ => new SiloLease());
        lease.Heard(at ?? _time.GetTimestamp());
        return lease;
    }

    /// <summary>Drops everything: the grains that pushed here may have reactivated elsewhere, without this watcher.</summary>
    public void Clear()
    {
        _entries.Clear();
        _silos.Clear();
    }

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
    /// The answer held for a key: until <see cref="RenewAt"/> it is answered without asking the grain (half the read's
    /// watch), at <see cref="RefreshAt"/> the grain reloads it (timestamps); <see cref="Ttl"/> is the view's; its grain's
    /// <see cref="Silo"/> must have been heard from within the lease. <see cref="LastRead"/> orders eviction.
    /// </summary>
    private sealed record NearEntry(DashboardResult Result, long RenewAt, long RefreshAt, TimeSpan Ttl, SiloLease? Silo)
    {
        public long LastRead { get; set; }
    }
}

/// <summary>When this web host last heard from one silo (a timestamp): a heartbeat, or a grain's answer.</summary>
public sealed class SiloLease
{
    private long _heardAt;

    public long HeardAt => Volatile.Read(ref _heardAt);

    // Never backwards: an answer to a read that started before the last heartbeat must not shorten the lease.
    public void Heard(long at) => Monotonic.Raise(ref _heardAt, at);
}

/// <summary>
/// A near-cache key: the caller's for user-scoped views (<paramref name="User"/> its id), the site's and role's for
/// site-scoped ones (<paramref name="User"/> zero, so every admin of the site shares the entry the site's grain pushes).
/// </summary>
public readonly record struct NearKey(long Site, string Role, long User, string View, string Parameters);
