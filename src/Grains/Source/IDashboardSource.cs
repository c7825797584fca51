using StatsCache.Catalog;

namespace StatsCache.Source;

/// <summary>Computes a view's data from the database.</summary>
public interface IDashboardSource
{
    /// <summary>Runs every query of the view in one round trip, on data no older than <paramref name="fence"/> asks.</summary>
    Task<SourceData> LoadAsync(ViewDefinition view, DashboardScope scope, BoundParameters parameters, LoadFence fence, CancellationToken cancellationToken);
}
