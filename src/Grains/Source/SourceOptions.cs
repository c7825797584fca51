using System.ComponentModel.DataAnnotations;
using Npgsql;

namespace StatsCache.Source;

/// <summary>
/// Where loads run (section <c>StatsCache:Source</c>): on read replicas of <c>ConnectionStrings:Stats</c> when any are listed,
/// fenced by WAL position so that no load reads older data than it must; on the primary otherwise.
/// </summary>
public sealed class SourceOptions : IValidatableObject
{
    public const string SectionName = "StatsCache:Source";

    /// <summary>Connection strings of streaming replicas of the primary (<c>StatsCache__Source__Replicas__0</c>, <c>__1</c>, …).</summary>
    public List<string> Replicas { get; set; } = [];

    /// <summary>
    /// How far behind the primary a replica may be for a TTL refresh (a load no change or read asked for). A replica further
    /// behind is skipped by every load until it catches up.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan MaxReplicaLag { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a load waits for a replica to replay the WAL position it needs (a change's commit, or the primary's position
    /// when a read asked for the entry) before it runs on the primary. It comes after the change debounce, which gives the
    /// replica a head start: a change reloads within debounce + this + the load, at worst.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:00:10")]
    public TimeSpan ReplicaWaitTimeout { get; set; } = TimeSpan.FromMilliseconds(300);

    /// <summary>How often each server's WAL position is read (the replicas' lag, and whether each answers) when no load asks.</summary>
    [Range(typeof(TimeSpan), "00:00:00.050", "00:01:00")]
    public TimeSpan ReplicaCheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>A replica whose load or check failed is skipped for this long, then checked again before it serves.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:10:00")]
    public TimeSpan ReplicaRetryDuration { get; set; } = TimeSpan.FromSeconds(5);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        for (var i = 0; i < Replicas.Count; i++)
        {
            var error = ConnectionStringError(Replicas[i]);
            if (error is not null)
            {
                // Never the value: it may hold a password.
                yield return new ValidationResult($"{SectionName}:Replicas:{i} is not a connection string: {error}", [nameof(Replicas)]);
            }
        }
    }

    private static string? ConnectionStringError(string value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return "it is empty.";
        }

        try
        {
            _ = new NpgsqlConnectionStringBuilder(value);
            return null;
        }
        catch (ArgumentException e)
        {
            return e.Message;
        }
    }
}
