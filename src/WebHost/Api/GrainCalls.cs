using System.Diagnostics;
using Orleans.Runtime;

namespace StatsCache.WebHost.Api;

/// <summary>
/// Reads from grains, retried while the cluster heals. A silo that died keeps having calls to its
/// grains rejected (or, for calls in flight when it died, unanswered) until the survivors declare it
/// dead (seconds, see ClusterMembershipOptions); then the grain reactivates elsewhere. Reads are
/// idempotent, and a repeated read joins the grain's load in flight, so a failed attempt is simply
/// sent again.
/// </summary>
internal static class GrainCalls
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(1);

    public static async Task<T> ReadAsync<T>(Func<CancellationToken, ValueTask<T>> call, ApiOptions options, CancellationToken requestAborted)
    {
        var started = Stopwatch.GetTimestamp();
        var delay = FirstDelay;
        while (true)
        {
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
            attempt.CancelAfter(options.GrainAttemptTimeout);
            try
            {
                return await call(attempt.Token);
            }
            catch (Exception e) when (IsTransient(e, requestAborted) && Stopwatch.GetElapsedTime(started) + delay < options.GrainRetryTimeout)
            {
                await Task.Delay(delay, requestAborted);
                delay = delay * 2 < MaxDelay ? delay * 2 : MaxDelay;
            }
        }
    }

    private static bool IsTransient(Exception e, CancellationToken requestAborted) =>
        e is OrleansMessageRejectionException or Orleans.Runtime.Messaging.ConnectionFailedException or TimeoutException
        || (e is OperationCanceledException && !requestAborted.IsCancellationRequested);
}
