using System.Diagnostics;
using Orleans.Runtime;

namespace StatsCache.WebHost.Api;

/// <summary>
/// Reads from grains, retried while the cluster heals, within a hard bound. A silo that died keeps having calls to its
/// grains rejected (or, for calls in flight when it died, unanswered until the method's response timeout: see
/// <see cref="IUserDashboardGrain.GetAsync"/>) until the survivors declare it dead (seconds, see
/// ClusterMembershipOptions); then the grain reactivates elsewhere. A silo that hangs (SIGSTOP, a network partition) is
/// not declared dead and answers nothing. Reads are idempotent, and a repeated read joins the grain's load in flight,
/// so a failed attempt is simply sent again, until <see cref="ApiOptions.GrainRetryTimeout"/>.
/// </summary>
internal static class GrainCalls
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Calls <paramref name="call"/> with <paramref name="state"/> until it answers, fails for a reason other than the
    /// cluster's, or <see cref="ApiOptions.GrainRetryTimeout"/> from the first attempt runs out: then it throws a
    /// <see cref="TimeoutException"/> (or the first attempt's error, when that attempt alone used the time up). The first
    /// attempt is bounded by the method's <c>[ResponseTimeout]</c>; later attempts and the delays between them are
    /// cancelled at the deadline. A static lambda and a state, rather than a closure, and no timer of its own until an
    /// attempt failed: this is on every cached read's path.
    /// </summary>
    public static async Task<T> ReadAsync<TState, T>(
        Func<TState, CancellationToken, ValueTask<T>> call, TState state, ApiOptions options, CancellationToken requestAborted)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            return await call(state, requestAborted);
        }
        catch (Exception e) when (IsTransient(e, requestAborted) && Stopwatch.GetElapsedTime(started) + FirstDelay < options.GrainRetryTimeout)
        {
            return await RetryAsync(call, state, started, options.GrainRetryTimeout, e, requestAborted);
        }
    }

    /// <summary>The attempts after a failed first one, each cancelled at <paramref name="started"/> + <paramref name="timeout"/>.</summary>
    private static async Task<T> RetryAsync<TState, T>(
        Func<TState, CancellationToken, ValueTask<T>> call, TState state, long started, TimeSpan timeout, Exception failed,
        CancellationToken requestAborted)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
        var left = timeout - Stopwatch.GetElapsedTime(started);
        deadline.CancelAfter(left > TimeSpan.Zero ? left : TimeSpan.Zero);
        var delay = FirstDelay;
        try
        {
            while (true)
            {
                await Task.Delay(delay, deadline.Token);
                try
                {
                    // Orleans completes a cancelled call at once on this side (WaitForCancellationAcknowledgement is off)
                    // and tells the grain; WaitAsync also bounds what the token does not reach (finding a gateway).
                    return await call(state, deadline.Token).AsTask().WaitAsync(deadline.Token);
                }
                catch (Exception e) when (IsTransient(e, deadline.Token))
                {
                    failed = e;
                    delay = delay * 2 < MaxDelay ? delay * 2 : MaxDelay;
                    if (Stopwatch.GetElapsedTime(started) + delay >= timeout)
                    {
                        // The next attempt could not start in time: answer now rather than at the deadline.
                        throw new TimeoutException($"The cluster did not answer within {timeout}.", failed);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !requestAborted.IsCancellationRequested)
        {
            throw new TimeoutException($"The cluster did not answer within {timeout}.", failed);
        }
    }

    private static bool IsTransient(Exception e, CancellationToken cancellationToken) =>
        e is OrleansMessageRejectionException or Orleans.Runtime.Messaging.ConnectionFailedException or TimeoutException
        || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested);
}
