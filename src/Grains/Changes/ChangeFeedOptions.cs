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
public sealed class ChangeFeedOptions : IValidatableObject
{
    public const string SectionName = "StatsCache:Changes";

    /// <summary>
    /// How often the slot's holder sends PostgreSQL a standby status update (so <c>pg_stat_replication.reply_time</c> of
    /// its WAL sender moves at least this often while it lives).
    /// </summary>
    public static readonly TimeSpan StatusUpdateInterval = TimeSpan.FromSeconds(1);

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

    /// <summary>
    /// How long the slot's holder may send PostgreSQL nothing (no status update, sent every <see cref="StatusUpdateInterval"/>)
    /// while its WAL sender waits on it, before a silo that wants the slot ends that WAL sender and takes over: a holder
    /// that is hung (SIGSTOP) or cut off from PostgreSQL would otherwise keep the slot until <c>wal_sender_timeout</c>.
    /// At least three status intervals, so that a late update or two never ends a live holder.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan HolderSilenceTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The longest wait between attempts to reconnect a lost connection: how late, at most, the feed resumes after the database is back.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:05:00")]
    public TimeSpan ReconnectMaxDuration { get; set; } = TimeSpan.FromSeconds(5);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (HolderSilenceTimeout < 3 * StatusUpdateInterval)
        {
            yield return new ValidationResult(
                $"StatsCache:Changes:HolderSilenceTimeout must be at least three of the holder's status intervals ({3 * StatusUpdateInterval}).",
                [nameof(HolderSilenceTimeout)]);
        }
    }
}
