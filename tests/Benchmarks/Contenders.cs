using System.Buffers.Text;
using System.Collections.Frozen;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;
using StatsCache.Catalog;
using StatsCache.Source;
using StatsCache.WebHost.Api;
using ZiggyCreatures.Caching.Fusion;

namespace StatsCache.Benchmarks;

/// <summary>
/// The caches StatsCache is measured against, in the benchmark host, behind the same authentication and
/// the same validation as the API (<see cref="DashboardApi.TryResolve"/>), writing the same JSON envelope
/// (<see cref="SnapshotResult"/>):
/// <c>/bench/nocache/{view}</c> runs the view's batch on every request,
/// <c>/bench/fusion/{view}</c> is FusionCache cache-aside (stampede protection is FusionCache's default).
/// The ceiling for a cached read over HTTP is <see cref="MinimalEndpoint"/>, in processes of its own.
/// </summary>
public static class Contenders
{
    public static IEndpointRouteBuilder MapContenders(this IEndpointRouteBuilder app)
    {
        var bench = app.MapGroup("/bench").RequireAuthorization();
        bench.MapGet("/nocache/{view}", NoCacheAsync);
        bench.MapGet("/fusion/{view}", FusionAsync);
        return app;
    }

    private static async Task<Results<SnapshotResult, ProblemHttpResult>> NoCacheAsync(
        string view, HttpContext context, DashboardCatalog catalog,
        NpgsqlDataSource db, BenchCounters counters)
    {
        if (!DashboardApi.TryResolve(view, context, catalog, out var read, out var problem))
        {
            return problem;
        }

        counters.Add(BenchCounters.NoCacheLoads, 1);
        var data = await PostgresDashboardSource.RunAsync(db, read.View, ScopeOf(read), read.Parameters, context.RequestAborted);
        var snapshot = new DashboardSnapshot(data, TimeProvider.System.GetUtcNow(), "");
        return new SnapshotResult(read.Caller, read.View, read.Parameters, snapshot, stale: false);
    }

    private static async Task<Results<SnapshotResult, StatusCodeHttpResult, ProblemHttpResult>> FusionAsync(
        string view, HttpContext context, DashboardCatalog catalog,
        IFusionCache cache, FusionContender fusion)
    {
        if (!DashboardApi.TryResolve(view, context, catalog, out var read, out var problem))
        {
            return problem;
        }

        var snapshot = await cache.GetOrSetAsync<DashboardSnapshot>(
            FusionContender.KeyOf(read),
            (_, ct) => fusion.LoadAsync(read, ct),
            fusion.OptionsFor(read.View),
            context.RequestAborted);

        // The same conditional-request support as the API: ETag from the content, max-age to expiry.
        var remaining = read.View.Ttl - (TimeProvider.System.GetUtcNow() - snapshot.AsOf);
        if (SnapshotResult.SetCacheHeaders(context, ViewAnswer.OpaqueTagOf(snapshot, stale: false), remaining))
        {
            return TypedResults.StatusCode(StatusCodes.Status304NotModified);
        }

        return new SnapshotResult(read.Caller, read.View, read.Parameters, snapshot, stale: false);
    }

    internal static DashboardScope ScopeOf(ViewRead read) => read.View.Scope == ViewScope.Site
        ? new DashboardScope(read.Caller.SiteId, read.Caller.Role, null)
        : new DashboardScope(read.Caller.SiteId, read.Caller.Role, read.Caller.UserId);
}

/// <summary>FusionCache as a competent engineer would configure it: entry options per view made once, TTL = the view's.</summary>
internal sealed class FusionContender(DashboardCatalog catalog, NpgsqlDataSource db, BenchCounters counters)
{
    private readonly FrozenDictionary<string, FusionCacheEntryOptions> _options = catalog.Views.ToFrozenDictionary(
        v => v.Name, v => new FusionCacheEntryOptions { Duration = v.Ttl }, StringComparer.Ordinal);

    /// <summary>site/role/user/view/params: the same entry StatsCache keeps per user.</summary>
    public static string KeyOf(ViewRead read) => string.Create(
        CultureInfo.InvariantCulture, $"{read.Caller.SiteId}/{read.Caller.Role}/{read.Caller.UserId}/{read.View.Name}/{read.Parameters.Key}");

    public FusionCacheEntryOptions OptionsFor(ViewDefinition view) => _options[view.Name];

    public async Task<DashboardSnapshot> LoadAsync(ViewRead read, CancellationToken cancellationToken)
    {
        counters.Add(BenchCounters.FusionLoads, 1);
        var asOf = TimeProvider.System.GetUtcNow();
        var data = await PostgresDashboardSource.RunAsync(db, read.View, Contenders.ScopeOf(read), read.Parameters, cancellationToken);
        return new DashboardSnapshot(data, asOf, Base64Url.EncodeToString(SHA256.HashData(data).AsSpan(0, 16)));
    }
}
