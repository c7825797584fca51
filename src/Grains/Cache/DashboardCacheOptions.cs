using System.ComponentModel.DataAnnotations;

namespace StatsCache.Cache;

/// <summary>How grains load, refresh, retry and forget dashboard entries (section <c>StatsCache:Cache</c>).</summary>
public sealed class DashboardCacheOptions
{
    public const string SectionName = "StatsCache:Cache";

    /// <summary>A load running longer than this is cancelled on the database and counts as failed.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:10:00")]
    public TimeSpan LoadTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The first retry after a failed load; each further failure doubles it.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00")]
    public TimeSpan RetryBaseDuration { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest wait between retries of a failing load.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00")]
    public TimeSpan RetryMaxDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The oldest snapshot still served (marked stale) while loads fail; older answers 503.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")]
    public TimeSpan MaxStaleDuration { get; set; } = TimeSpan.FromHours(1);

    /// <summary>An entry nobody read for this many TTLs stops refreshing and is dropped.</summary>
    [Range(1, 1000)]
    public int IdleTtlMultiple { get; set; } = 3;

    /// <summary>
    /// Each refresh comes up to this fraction of the TTL early, so entries do not refresh in step (the
    /// refresh after an entry's first load, a retry or a reload for a change comes at a random point of the
    /// TTL instead, which spreads entries loaded together).
    /// </summary>
    [Range(0.0, 0.5)]
    public double RefreshJitter { get; set; } = 0.1;

    /// <summary>
    /// A change notification reloads the entries it affects after this delay, so a burst of changes
    /// costs one reload; changes during a reload cause one more after it.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan ChangeDebounceDuration { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>The most entries (view and parameter combinations) one grain keeps; the least recently read goes first.</summary>
    [Range(1, 10_000)]
    public int MaxEntriesPerGrain { get; set; } = 32;

    /// <summary>
    /// A forced refresh (<c>refresh=true</c>) of an entry whose last load ended less than this ago starts no
    /// load and answers the current snapshot; one during a load joins it. So forced refreshes cost an entry
    /// at most one load per interval however many callers ask.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan MinRefreshInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How many reads that add an entry (a view and parameter combination not cached, so a load) one caller may
    /// make at once; past it, and past <see cref="NewEntriesPerSecond"/>, such reads are refused (HTTP 429).
    /// Reads of cached entries are never refused.
    /// </summary>
    [Range(1, 10_000)]
    public int NewEntryBurst { get; set; } = 20;

    /// <summary>How fast a caller's budget of new entries (<see cref="NewEntryBurst"/>) fills up again.</summary>
    [Range(0.01, 10_000.0)]
    public double NewEntriesPerSecond { get; set; } = 1;

    /// <summary>
    /// The most first loads of new entries one grain (one caller's, or one site's and role's) runs at once; the others
    /// wait their turn. Keeps a burst of new entries from putting many queries on PostgreSQL together. Refreshes and
    /// retries are not held by it.
    /// </summary>
    [Range(1, 64)]
    public int MaxConcurrentFirstLoadsPerGrain { get; set; } = 2;
}
