using System.ComponentModel.DataAnnotations;

namespace StatsCache.Changes;

/// <summary>Where the change feed reads the platform's writes from.</summary>
public enum ChangeSource
{
    /// <summary>
    /// PostgreSQL's WAL, through one logical replication slot per cluster (<c>pgoutput</c>): nothing in the platform's write
    /// path, nothing lost across a restart. Needs <c>wal_level=logical</c>.
    /// </summary>
    Replication,

    /// <summary>Triggers that send <c>NOTIFY</c>, heard by every silo: for a database whose <c>wal_level</c> cannot be <c>logical</c>.</summary>
    Notify,
}

/// <summary>The change feed (section <c>StatsCache:Changes</c>): the platform's writes refresh the entries they make out of date.</summary>
public sealed class ChangeFeedOptions
{
    public const string SectionName = "StatsCache:Changes";

    /// <summary>Read the platform's changes. Off: entries refresh by their TTL only.</summary>
    public bool IsEnabled { get; set; } = true;

    /// <summary>Where changes come from: the WAL (default) or the triggers' notifications.</summary>
    public ChangeSource Source { get; set; } = ChangeSource.Replication;

    /// <summary>The cluster's logical replication slot (<see cref="ChangeSource.Replication"/>): one per cluster, read by one silo at a time.</summary>
    [RegularExpression("^[a-z0-9_]{1,63}$", ErrorMessage = "StatsCache:Changes:SlotName must be 1 to 63 lower-case letters, digits and '_'.")]
    public string SlotName { get; set; } = "statscache";

    /// <summary>The publication of the tables the catalog's views read (<see cref="ChangeSource.Replication"/>); made by <c>webhost setup</c>.</summary>
    [RegularExpression("^[a-z][a-z0-9_]{0,62}$", ErrorMessage = "StatsCache:Changes:PublicationName must be 1 to 63 lower-case letters, digits and '_', starting with a letter.")]
    public string PublicationName { get; set; } = "statscache";

    /// <summary>How often a silo that does not hold the slot checks whether it is free (so another takes over when its holder dies).</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:01:00")]
    public TimeSpan SlotRetryDuration { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest wait between attempts to reconnect a lost connection: how late, at most, the feed resumes after the database is back.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:05:00")]
    public TimeSpan ReconnectMaxDuration { get; set; } = TimeSpan.FromSeconds(5);
}
