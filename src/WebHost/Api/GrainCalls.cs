using System.Diagnostics;
using Orleans.Runtime;

namespace StatsCache.WebHost.Api;

/// <summary>
/// Reads from grains, retried while the cluster heals. A silo that died keeps having calls to its
/// grains rejected (or, for calls in flight when it died, unanswered until the method's response
/// timeout: see <see cref="IUserDashboardGrain.GetAsync"/>) until the survivors declare it dead
/// (seconds, see ClusterMembershipOptions); then the grain reactivates elsewhere. Reads are
/// idempotent, and a repeated read joins the grain's load in flight, so a failed attempt is simply
/// sent again.
/// </summary>
internal static class GrainCalls
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Calls <paramref name="call"/> with <paramref name="state"/> until it answers, fails for a reason
    /// other than the cluster's, or <see cref="ApiOptions.GrainRetryTimeout"/> runs out. A static lambda
    /// and a state, rather than a closure: this is on every cached read's path.
    /// </summary>
    public static async Task<T> ReadAsync<TState, T>(
        Func<TState, CancellationToken, ValueTask<T>> call, TState state, ApiOptions options, CancellationToken requestAborted)
    {
        var started = Stopwatch.GetTimestamp();
        var delay = FirstDelay;
        while (true)
        {
            try
            {
                return await call(state, requestAborted);
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
