using System.Diagnostics.Metrics;
using StatsCache.Cache;
using StatsCache.WebHost.Live;

namespace StatsCache.WebHost.NearCache;

/// <summary>
/// The web host's one <see cref="IDashboardWatcher"/>: the grains push every change of a watched entry here, and it
/// hands it to the near-cache (when on) and to the live streams watching the entry. Its reference is made once Orleans
/// runs and registered by reads that want the entry's pushes (<see cref="Wants"/>).
/// </summary>
public sealed class DashboardWatcher : IDashboardWatcher
{
    private readonly DashboardNearCache _nearCache;
    private readonly LiveEntries _live;
    private readonly Lazy<IDashboardWatcher> _reference;
    private readonly Counter<long> _pushes;
    private readonly Counter<long> _heartbeats;

    public DashboardWatcher(IGrainFactory grains, DashboardNearCache nearCache, LiveEntries live, IMeterFactory meters)
    {
        _nearCache = nearCache;
        _live = live;
        _reference = new(() => grains.CreateObjectReference<IDashboardWatcher>(this));
        var meter = meters.Create(DashboardMetrics.MeterName);
        _pushes = meter.CreateCounter<long>("statscache.nearcache.pushes", "{push}", "Changes the grains pushed to this web host.");
        _heartbeats = meter.CreateCounter<long>("statscache.nearcache.heartbeats", "{heartbeat}", "Heartbeats of silos whose grains hold this web host's watcher.");
    }

    /// <summary>The reference a read registers with the grain.</summary>
    public IDashboardWatcher Reference => _reference.Value;

    /// <summary>Whether a read of <paramref name="key"/> should watch it: the near-cache keeps answers, or a live stream shows it.</summary>
    public bool Wants(in NearKey key) => _nearCache.IsEnabled || _live.IsWatched(key);

    /// <summary>A watching read's answer from the grain, read (and watched) from <paramref name="readStarted"/>.</summary>
    public void Answered(in NearKey key, DashboardResult result, TimeSpan ttl, long readStarted)
    {
        if (_nearCache.IsEnabled && result.Snapshot is not null)
        {
            _nearCache.Store(key, result, ttl, readStarted);
        }

        _live.Apply(key, result, readStarted);
    }

    public Task OnChangedAsync(DashboardChange change)
    {
        _pushes.Add(1);
        var key = new NearKey(change.Scope.SiteId, change.Scope.Role, change.Scope.UserId ?? 0, change.View, change.Parameters);
        if (_nearCache.IsEnabled)
        {
            _nearCache.Apply(key, change.Result);
        }

        if (change.Result is { } result)
        {
            _live.Apply(key, result);
        }
        else
        {
            _live.Gone(key);
        }

        return Task.CompletedTask;
    }

    public Task OnSiloAliveAsync(SiloAddress silo)
    {
        _heartbeats.Add(1);
        _nearCache.Heard(silo);
        return Task.CompletedTask;
    }

    /// <summary>
    /// The grains that pushed here may have reactivated elsewhere, without this watcher: the near-cache empties and the
    /// live streams' entries are read (and watched) again.
    /// </summary>
    public void Lost()
    {
        _nearCache.Clear();
        _live.RenewAll();
    }
}
