using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using StatsCache.Cache;

namespace StatsCache.Changes;

/// <summary>
/// Tells this silo's active grains about the changes that concern them (one-way calls: they return at once, and each grain
/// debounces). A change for a grain that is not active activates nothing: a grain activated later loads fresh numbers.
/// </summary>
public sealed partial class ChangeDispatcher(DashboardCache cache, DashboardGrains grains, DashboardMetrics metrics, ILogger<ChangeDispatcher> logger)
{
    public void Dispatch(ChangeBatch batch)
    {
        var routes = ChangeRouting.Route(batch, cache.Catalog, cache.Active);
        foreach (var (grain, views) in routes)
        {
            Invalidate(grain, views, batch.Lsn);
        }

        metrics.ChangesRouted(batch, routes.Count);
    }

    private void Invalidate(DashboardScope grain, ImmutableArray<string> views, ulong lsn)
    {
        var call = grain.UserId is { } user
            ? grains.User(grain.SiteId, grain.Role, user).InvalidateAsync(views, lsn)
            : grains.Site(grain.SiteId, grain.Role).InvalidateAsync(views, lsn);
        _ = call.ContinueWith(t => LogInvalidateFailed(logger, t.Exception!, grain.SiteId), TaskContinuationOptions.OnlyOnFaulted);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not tell a grain of site {SiteId} about a change")]
    private static partial void LogInvalidateFailed(ILogger logger, Exception exception, long siteId);
}
