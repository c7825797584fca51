using StatsCache.Catalog;

namespace StatsCache.Source;

/// <summary>Computes a view's data from the database.</summary>
public interface IDashboardSource
{
    /// <summary>Runs every query of the view in one round trip; returns the <c>data</c> object as UTF-8 JSON.</summary>
    Task<byte[]> LoadAsync(ViewDefinition view, DashboardScope scope, BoundParameters parameters, CancellationToken cancellationToken);
}
