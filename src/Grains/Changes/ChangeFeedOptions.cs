using System.ComponentModel.DataAnnotations;

namespace StatsCache.Changes;

/// <summary>The change feed (section <c>StatsCache:Changes</c>): PostgreSQL notifications that refresh what a write changed.</summary>
public sealed class ChangeFeedOptions
{
    public const string SectionName = "StatsCache:Changes";

    /// <summary>Listen for change notifications in each silo. Off: entries refresh by their TTL only.</summary>
    public bool IsEnabled { get; set; } = true;

    /// <summary>The longest wait between attempts to reconnect a lost listening connection.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:05:00")]
    public TimeSpan ReconnectMaxDuration { get; set; } = TimeSpan.FromSeconds(30);
}
