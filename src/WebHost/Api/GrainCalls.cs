using System.Diagnostics;
using Orleans.Runtime;

namespace StatsCache.WebHost.Api;

/// <summary>
/// Reads from grains, retried while the cluster heals. A silo that died keeps having calls to its
/// grains rejected until the survivors declare it dead (seconds, see ClusterMembershipOptions);
/// then the grain reactivates elsewhere. Reads are idempotent, so a rejected one is simply sent again.
/// </summary>
internal static class GrainCalls
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(1);

    public static async Task<T> ReadAsync<T>(Func<ValueTask<T>> call, TimeSpan budget, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var delay = FirstDelay;
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception e) when (IsTransient(e) && Stopwatch.GetElapsedTime(started) + delay < budget)
            {
                await Task.Delay(delay, cancellationToken);
                delay = delay * 2 < MaxDelay ? delay * 2 : MaxDelay;
            }
        }
    }

    private static bool IsTransient(Exception e) =>
        e is OrleansMessageRejectionException or Orleans.Runtime.Messaging.ConnectionFailedException;
}
