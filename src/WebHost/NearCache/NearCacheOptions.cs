using System.ComponentModel.DataAnnotations;

namespace StatsCache.WebHost.NearCache;

/// <summary>The web host's near-cache of grain answers (section <c>StatsCache:NearCache</c>).</summary>
public sealed class NearCacheOptions
{
    public const string SectionName = "StatsCache:NearCache";

    /// <summary>Off: every read calls the grain.</summary>
    public bool IsEnabled { get; set; } = true;

    /// <summary>
    /// How long a read's watch lasts: the grain pushes changes for this long, and the web host answers from memory
    /// no longer without asking the grain again (which renews it). A silo that hangs without leaving the cluster
    /// (so nobody declares it dead) can leave an entry unchanged in memory for at most this long.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:01:00")]
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The most entries kept; past it the least recently read tenth is dropped.</summary>
    [Range(100, 10_000_000)]
    public int MaxEntries { get; set; } = 100_000;
}
