using System.Collections.Concurrent;

namespace StatsCache.Cache;

/// <summary>
/// The dashboard grains active in this silo, by site. The change feed notifies only these: every
/// silo hears every change, and each refreshes what it holds, so nothing is refreshed twice and
/// no grain is activated just to be told that data it does not hold has changed.
/// </summary>
public sealed class ActiveDashboards
{
    private readonly ConcurrentDictionary<long, ConcurrentDictionary<DashboardScope, byte>> _sites = new();

    public void Add(DashboardScope scope) =>
        _sites.GetOrAdd(scope.SiteId, _ => new()).TryAdd(scope, 0);

    public void Remove(DashboardScope scope)
    {
        if (_sites.TryGetValue(scope.SiteId, out var grains))
        {
            grains.TryRemove(scope, out _);
        }
    }

    public bool Contains(DashboardScope scope) =>
        _sites.TryGetValue(scope.SiteId, out var grains) && grains.ContainsKey(scope);

    /// <summary>The site's active grains (user and site grains alike).</summary>
    public IEnumerable<DashboardScope> OfSite(long siteId) =>
        _sites.TryGetValue(siteId, out var grains) ? grains.Keys : [];

    public IEnumerable<DashboardScope> All => _sites.Values.SelectMany(grains => grains.Keys);
}
