using System.Diagnostics.Metrics;
using StatsCache.Cache;

namespace StatsCache.Source;

/// <summary>Where loads run (meter <c>StatsCache</c>): by target, the waits of their fences, the fallbacks to the primary, the replicas' lag.</summary>
public sealed class SourceMetrics
{
    // Seconds: a fence met by the next check of the replica, up to one that times out (ReplicaWaitTimeout, at most 10 s).
    private static readonly double[] WaitBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly Counter<long> _loads;
    private readonly Counter<long> _fallbacks;
    private readonly Histogram<double> _fenceWait;
    private readonly Meter _meter;

    public SourceMetrics(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(DashboardMetrics.MeterName);
        _loads = _meter.CreateCounter<long>(
            "statscache.source.loads", "{load}", "Loads by the server they ran on (target: primary, replica-0, …) and why they ran (reason: current, change, refresh).");
        _fallbacks = _meter.CreateCounter<long>(
            "statscache.source.fallbacks", "{load}",
            "Loads that ran on the primary although replicas are configured, by reason: lagging (past MaxReplicaLag), timeout (the fence was not reached in ReplicaWaitTimeout), failed (the load failed on the replica), unavailable (no replica answers).");
        _fenceWait = _meter.CreateHistogram<double>(
            "statscache.source.fence.wait.duration", "s",
            "Time loads waited for a replica to replay the WAL position they need, by outcome (reached, timeout).",
            tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = WaitBuckets });
    }

    public void Load(string target, LoadReason reason) =>
        _loads.Add(1, new KeyValuePair<string, object?>("target", target), new KeyValuePair<string, object?>("reason", ReasonTag(reason)));

    public void Fallback(string reason) => _fallbacks.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void FenceWaited(TimeSpan waited, bool reached) =>
        _fenceWait.Record(waited.TotalSeconds, new KeyValuePair<string, object?>("outcome", reached ? "reached" : "timeout"));

    /// <summary>The replicas' gauges: lag in bytes and seconds behind the primary, and 1 while a replica serves loads.</summary>
    internal void ObserveReplicas(Func<IEnumerable<Measurement<long>>> lagBytes, Func<IEnumerable<Measurement<double>>> lagSeconds, Func<IEnumerable<Measurement<int>>> up)
    {
        _meter.CreateObservableGauge("statscache.source.replica.lag.bytes", lagBytes, "By", "WAL the replica has yet to replay of what the primary has written, by replica.");
        _meter.CreateObservableGauge(
            "statscache.source.replica.lag.seconds", lagSeconds, "s", "How long ago the primary held nothing the replica has not replayed (0: caught up), by replica.");
        _meter.CreateObservableGauge("statscache.source.replica.up", up, "{replica}", "1 while the replica answers and serves loads, 0 while it is skipped, by replica.");
    }

    private static string ReasonTag(LoadReason reason) => reason switch
    {
        LoadReason.Current => "current",
        LoadReason.Change => "change",
        _ => "refresh",
    };
}
