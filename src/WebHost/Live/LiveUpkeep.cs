using Microsoft.Extensions.Options;
using StatsCache.WebHost.Api;

namespace StatsCache.WebHost.Live;

/// <summary>
/// Keeps the live streams' entries watched and the streams alive: each entry's grain watch is renewed with one read
/// half a watch (<see cref="NearCache.NearCacheOptions.WatchDuration"/>) after the last (at once after its grain dropped it), however
/// many streams show it, and every open stream is woken for a heartbeat each <see cref="LiveOptions.HeartbeatInterval"/>.
/// Changes themselves are pushed by the grains, never polled here.
/// </summary>
public sealed partial class LiveUpkeep(
    LiveEntries entries, DashboardReader reader, IOptions<LiveOptions> options, TimeProvider time, ILogger<LiveUpkeep> logger)
    : BackgroundService
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var heartbeat = options.Value.HeartbeatInterval;
        var nextHeartbeat = time.GetTimestamp() + Ticks(heartbeat);
        using var timer = new PeriodicTimer(Tick, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var now = time.GetTimestamp();
            foreach (var entry in entries.Entries)
            {
                if (now >= entry.RenewAt && entry.TryStartRenewal())
                {
                    _ = RenewAsync(entry, stoppingToken);
                }
            }

            if (now >= nextHeartbeat)
            {
                nextHeartbeat = now + Ticks(heartbeat);
                foreach (var stream in entries.Streams)
                {
                    stream.BeatHeart();
                }
            }
        }
    }

    // A read that watches the entry: its answer reaches the streams through LiveEntries.Apply, and sets the next renewal.
    private async Task RenewAsync(LiveEntry entry, CancellationToken stoppingToken)
    {
        try
        {
            var answer = await reader.AskGrainAsync(entry.Read, entry.Key, watch: true, stoppingToken);
            if (answer.Kind is ViewAnswerKind.Refused or ViewAnswerKind.ClusterUnavailable)
            {
                entry.RenewAt = time.GetTimestamp() + Ticks(RetryDelay);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            LogRenewalFailed(logger, e, entry.Key.View);
            entry.RenewAt = time.GetTimestamp() + Ticks(RetryDelay);
        }
        finally
        {
            entry.EndRenewal();
        }
    }

    private long Ticks(TimeSpan duration) => (long)(duration.TotalSeconds * time.TimestampFrequency);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Renewing the live watch of {View} failed; retrying")]
    private static partial void LogRenewalFailed(ILogger logger, Exception exception, string view);
}
