using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using StatsCache.Cache;

namespace StatsCache.Changes;

/// <summary>
/// The <see cref="ChangeSource.Notify"/> source: each silo's one <c>LISTEN</c> connection. A notice goes to the grains of
/// this silo it affects; a lost connection is reconnected with backoff, and then every active entry refreshes, since
/// notices sent meanwhile are lost.
/// </summary>
public sealed partial class NotifyChangeFeed(
    IConfiguration configuration,
    ChangeDispatcher dispatcher,
    DashboardMetrics metrics,
    IOptions<ChangeFeedOptions> options,
    ILogger<NotifyChangeFeed> logger) : BackgroundService
{
    /// <summary>The change feed's connection's application name (either source), to find it in pg_stat_activity.</summary>
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
                    dispatcher.Dispatch(ChangeBatch.Everything(lsn: 0));
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
        if (ChangeNotice.TryParse(Encoding.UTF8.GetBytes(payload)) is not { } notice)
        {
            LogIgnored(logger, payload.Length);
            return;
        }

        dispatcher.Dispatch(ChangeBatch.Of(notice));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The change feed connection was lost; reconnecting in {RetryIn}")]
    private static partial void LogConnectionLost(ILogger logger, Exception exception, TimeSpan retryIn);

    [LoggerMessage(Level = LogLevel.Information, Message = "The change feed is listening again; refreshing every active entry")]
    private static partial void LogReconnected(ILogger logger);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Ignored a change notice that is not one ({Length} characters)")]
    private static partial void LogIgnored(ILogger logger, int length);
}
