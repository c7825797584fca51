using System.Collections.Immutable;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using StatsCache.Cache;

namespace StatsCache.Changes;

/// <summary>
/// Each silo's one <c>LISTEN</c> connection to the change feed. A notice goes to the grains of this
/// silo it affects; a lost connection is reconnected with backoff, and then every active entry
/// refreshes, since notices sent meanwhile are lost.
/// </summary>
public sealed partial class ChangeFeedListener(
    IConfiguration configuration,
    DashboardCache cache,
    DashboardMetrics metrics,
    DashboardGrains grains,
    IOptions<ChangeFeedOptions> options,
    ILogger<ChangeFeedListener> logger) : BackgroundService
{
    /// <summary>The listening connection's application name, to find it in pg_stat_activity.</summary>
    public const string ApplicationName = "statscache-changes";

    private static readonly TimeSpan HealthCheckInterval = TimeSpan.FromSeconds(15);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // A connection of its own, outside the pool the views' loads share, named for operators.
        var connectionString = new NpgsqlConnectionStringBuilder(configuration.GetConnectionString(GrainServiceExtensions.StatsConnectionName))
        {
            ApplicationName = ApplicationName,
            Pooling = false,
            KeepAlive = 10,
        };
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        var delay = TimeSpan.FromMilliseconds(100);
        var connectedBefore = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, e) => OnNotice(e.Payload);
                await using (var listen = new NpgsqlCommand($"listen {ChangeNotice.Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }

                // Listening again: whatever changed while we were not is caught up by refreshing everything held.
                if (connectedBefore)
                {
                    LogReconnected(logger);
                    RefreshAllActive();
                }

                metrics.FeedConnected(again: connectedBefore);
                connectedBefore = true;
                delay = TimeSpan.FromMilliseconds(100);
                while (true)
                {
                    // A silent network failure would leave WaitAsync waiting forever: probe now and then.
                    if (!await connection.WaitAsync(HealthCheckInterval, stoppingToken))
                    {
                        await using var probe = new NpgsqlCommand("select 1", connection);
                        await probe.ExecuteNonQueryAsync(stoppingToken);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogConnectionLost(logger, e, delay);
                try
                {
                    await Task.Delay(delay, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                delay = delay * 2 < options.Value.ReconnectMaxDuration ? delay * 2 : options.Value.ReconnectMaxDuration;
            }
        }
    }

    private void OnNotice(string payload)
    {
        if (ChangeNotice.TryParse(payload) is not { } notice)
        {
            LogIgnored(logger, payload.Length);
            return;
        }

        var routes = ChangeRouting.Route(notice, cache.Catalog, cache.Active);
        foreach (var (grain, views) in routes)
        {
            Invalidate(grain, views);
        }

        metrics.ChangeReceived(notice.Table, routes.Count);
    }

    private void RefreshAllActive()
    {
        foreach (var grain in cache.Active.All)
        {
            Invalidate(grain, []);
        }
    }

    // One-way calls: they return at once, and the grain debounces.
    private void Invalidate(DashboardScope grain, ImmutableArray<string> views)
    {
        var call = grain.UserId is { } user
            ? grains.User(grain.SiteId, grain.Role, user).InvalidateAsync(views)
            : grains.Site(grain.SiteId, grain.Role).InvalidateAsync(views);
        _ = call.ContinueWith(t => LogInvalidateFailed(logger, t.Exception!, grain.SiteId), TaskContinuationOptions.OnlyOnFaulted);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The change feed connection was lost; reconnecting in {RetryIn}")]
    private static partial void LogConnectionLost(ILogger logger, Exception exception, TimeSpan retryIn);

    [LoggerMessage(Level = LogLevel.Information, Message = "The change feed is listening again; refreshing every active entry")]
    private static partial void LogReconnected(ILogger logger);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Ignored a change notice that is not one ({Length} characters)")]
    private static partial void LogIgnored(ILogger logger, int length);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not tell a grain of site {SiteId} about a change")]
    private static partial void LogInvalidateFailed(ILogger logger, Exception exception, long siteId);
}
