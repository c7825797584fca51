using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StatsCache.Catalog;
using StatsCache.Source;

namespace StatsCache.Cache;

/// <summary>What every dashboard grain needs, in one silo-wide service: the catalog and a way to make its entries.</summary>
public sealed class DashboardCache(
    DashboardCatalog catalog,
    IDashboardSource source,
    IOptions<DashboardCacheOptions> options,
    DashboardMetrics metrics,
    WatcherHeartbeats heartbeats,
    TimeProvider time,
    ILoggerFactory loggerFactory)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger<DashboardCache>();

    public DashboardCatalog Catalog { get; } = catalog;

    /// <summary>The dashboard grains active in this silo, which the change feed notifies.</summary>
    public ActiveDashboards Active { get; } = new();

    internal DashboardEntries CreateEntries(IGrainBase grain, IPersistentState<DashboardSnapshots> store, DashboardScope scope) =>
        new(grain, store, Catalog, source, scope, options.Value, metrics, heartbeats, time, _logger);

    /// <summary>A caller's budget of new entries (see <see cref="DashboardCacheOptions.NewEntryBurst"/>).</summary>
    internal NewEntryBudget CreateBudget() => new(options.Value, time);
}
