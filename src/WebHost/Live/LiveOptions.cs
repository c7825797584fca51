using System.ComponentModel.DataAnnotations;

namespace StatsCache.WebHost.Live;

/// <summary>Live dashboards: the server-sent event streams of <c>/api/dashboards/live</c> (section <c>StatsCache:Live</c>).</summary>
public sealed class LiveOptions
{
    public const string SectionName = "StatsCache:Live";

    /// <summary>How often an open stream gets a comment line when nothing changed, so proxies keep it open.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:05:00")]
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Streams one caller (site, role, user) may hold open on one web host; past it, 429.</summary>
    [Range(1, 1000)]
    public int MaxStreamsPerCaller { get; set; } = 8;

    /// <summary>Streams one web host holds open; past it, 503 (another web host may take the caller).</summary>
    [Range(1, 1_000_000)]
    public int MaxStreams { get; set; } = 20_000;
}
