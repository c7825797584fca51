using System.ComponentModel.DataAnnotations;

namespace StatsCache.WebHost.NearCache;

/// <summary>The web host's near-cache of grain answers and the watches of its watcher (section <c>StatsCache:NearCache</c>).</summary>
public sealed class NearCacheOptions
{
    public const string SectionName = "StatsCache:NearCache";

    /// <summary>Off: every read calls the grain.</summary>
    public bool IsEnabled { get; set; } = true;

    /// <summary>
    /// How long a read's watch lasts at the grain: it pushes changes to this web host for that long. Near-cache entries
    /// are answered from memory for the first half of it, then the next read asks the grain, which renews it; a live
    /// entry's watch is renewed at half of it. Either way one grain call per entry per web host per half watch, however
    /// many reads or streams. Its length costs no freshness (the silos' heartbeats and the pushes do that), only the pushes
    /// and heartbeats a web host that went away without a word gets meanwhile. At most the grains' limit, 5 minutes.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:05:00")]
    public TimeSpan WatchDuration { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How long the web host trusts a silo it has not heard from: the silos send every watcher their grains hold a
    /// heartbeat each second (<see cref="IDashboardWatcher.HeartbeatPeriod"/>), and answer reads. A silo that hangs
    /// without leaving the cluster (so nobody declares it dead) can leave an entry unchanged in memory for at most this long.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:02", "00:01:00")]
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The most entries kept; past it the least recently read tenth is dropped.</summary>
    [Range(100, 10_000_000)]
    public int MaxEntries { get; set; } = 100_000;
}
