using Microsoft.Extensions.Options;
using StatsCache.Catalog;
using StatsCache.WebHost.NearCache;

namespace StatsCache.WebHost.Api;

/// <summary>
/// Reads one validated view for its caller: from the near-cache while it holds the grain's own answer, otherwise from
/// the caller's grain, registering this web host's watcher when the near-cache or a live stream wants the entry's
/// pushes. The single read, the batch and the live streams all read through here, so they answer alike.
/// </summary>
public sealed class DashboardReader(
    DashboardGrains grains,
    DashboardNearCache nearCache,
    DashboardWatcher watcher,
    IOptions<ApiOptions> options,
    ApiMetrics metrics,
    ILogger<DashboardReader> logger)
{
    /// <summary>The near-cache's (and the live streams') key of a read: the caller's, or the site's and role's for site views.</summary>
    internal static NearKey KeyOf(in ViewRead read) => new(
        read.Caller.SiteId, read.Caller.Role, read.View.Scope == ViewScope.Site ? 0 : read.Caller.UserId, read.View.Name, read.Parameters.Key);

    internal ValueTask<ViewAnswer> ReadAsync(ViewRead read, CancellationToken cancellationToken)
    {
        var key = KeyOf(read);
        if (!read.Refresh && nearCache.IsEnabled && nearCache.TryGet(key, out var held, out var refreshIn))
        {
            return new ValueTask<ViewAnswer>(ViewAnswer.Answered(held, stale: false, refreshIn));
        }

        return AskGrainAsync(read, key, watcher.Wants(key), cancellationToken);
    }

    /// <summary>
    /// Asks the caller's grain, watching the entry when <paramref name="watch"/> (for
    /// <see cref="NearCacheOptions.WatchDuration"/>, which also renews a watch held). A failed call is retried while the cluster heals
    /// (<see cref="GrainCalls"/>), then answered as unavailable.
    /// </summary>
    internal async ValueTask<ViewAnswer> AskGrainAsync(
        ViewRead read, NearKey key, bool watch, CancellationToken cancellationToken)
    {
        var readStarted = nearCache.ReadStarting();
        var watching = watch ? watcher.Reference : null;
        DashboardResult result;
        try
        {
            var grain = grains.User(read.Caller.SiteId, read.Caller.Role, read.Caller.UserId);
            var request = new DashboardRequest(read.View.Name, read.Parameters.Key, read.Refresh, watching, nearCache.WatchDuration);
            result = await GrainCalls.ReadAsync(
                static (call, ct) => call.grain.GetAsync(call.request, ct), (grain, request), options.Value, cancellationToken);
        }
        // A SerializerException is a failure the cluster could not even describe: Orleans failed to serialize it (seen: its own
        // placement timeout, with an inner exception of a type it has no codec for).
        catch (Exception e) when (e is OrleansException or TimeoutException or Orleans.Serialization.SerializerException
            || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            logger.LogWarning(e, "The cluster did not answer a read of {View}", read.View.Name);
            return ViewAnswer.ClusterUnavailable;
        }

        if (result.Refused)
        {
            metrics.Refused(RefusalReason.NewEntries);
            return new ViewAnswer(ViewAnswerKind.Refused, null, false, result.NextRefreshIn);
        }

        if (watching is not null)
        {
            watcher.Answered(key, result, read.View.Ttl, readStarted);
        }

        return ViewAnswer.Of(result);
    }
}

/// <summary>What a read got: a snapshot, or why there is none.</summary>
internal enum ViewAnswerKind
{
    Answered,

    /// <summary>The read would have started a load past the caller's budget of new entries (429).</summary>
    Refused,

    /// <summary>Nothing usable is cached and loading failed (503).</summary>
    SourceUnavailable,

    /// <summary>The cluster did not answer, even after retrying while it healed (503).</summary>
    ClusterUnavailable,
}

/// <summary>
/// A read's outcome: the <see cref="Snapshot"/> with its staleness when <see cref="ViewAnswerKind.Answered"/>;
/// <see cref="NextRefreshIn"/> is the answer's max-age, or how long to wait before retrying one without a snapshot.
/// </summary>
internal readonly record struct ViewAnswer(ViewAnswerKind Kind, DashboardSnapshot? Snapshot, bool Stale, TimeSpan NextRefreshIn)
{
    public static readonly ViewAnswer ClusterUnavailable = new(ViewAnswerKind.ClusterUnavailable, null, true, TimeSpan.FromSeconds(1));

    public static ViewAnswer Answered(DashboardSnapshot snapshot, bool stale, TimeSpan nextRefreshIn) =>
        new(ViewAnswerKind.Answered, snapshot, stale, nextRefreshIn);

    /// <summary>A grain's (not refused) result: its snapshot, or none because loading failed.</summary>
    public static ViewAnswer Of(DashboardResult result) => result.Snapshot is { } snapshot
        ? Answered(snapshot, result.Stale, result.NextRefreshIn)
        : new(ViewAnswerKind.SourceUnavailable, null, true, result.NextRefreshIn);

    /// <summary>
    /// The answer's entity tag, without the weak mark its ETag carries: equal data and staleness is the same answer,
    /// even if it was reloaded since.
    /// </summary>
    public static string OpaqueTagOf(DashboardSnapshot snapshot, bool stale) =>
        stale ? $"\"{snapshot.ContentHash}-stale\"" : $"\"{snapshot.ContentHash}\"";

    /// <summary>The problem a read without a snapshot is answered with (status, title, detail), naming the view.</summary>
    public (int Status, string Title, string Detail) Problem(string view) => Kind switch
    {
        ViewAnswerKind.Refused => (StatusCodes.Status429TooManyRequests, DashboardApi.TooFastTitle,
            $"Reading '{view}' with parameters nobody has read lately starts a database load, and you have started too many; what is cached still answers."),
        ViewAnswerKind.SourceUnavailable => (StatusCodes.Status503ServiceUnavailable, "The data source is unavailable.",
            $"View '{view}' has no usable snapshot and loading it failed; retry later."),
        ViewAnswerKind.ClusterUnavailable => (StatusCodes.Status503ServiceUnavailable, "The cache cluster is unavailable.",
            $"The cluster did not answer a read of '{view}'; retry later."),
        _ => throw new InvalidOperationException("An answered read has no problem."),
    };
}
