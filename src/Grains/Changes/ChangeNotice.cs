using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;
using Npgsql;

namespace StatsCache.Changes;

/// <summary>
/// One change of the platform's data: a table's rows of a site changed, for the users named (<see cref="Users"/>;
/// null: possibly every user of the site), or the invalidation API asked to refresh some views (<see cref="Views"/>;
/// null: all) of a site's users. As JSON it is what the triggers send (<c>{"table": "orders", "site": 1, "users": [42, 7]}</c>)
/// and what the invalidation API publishes (<c>{"site": 1, "users": [42], "views": ["client-stats"]}</c>).
/// </summary>
[GenerateSerializer, Immutable, Alias("statscache.ChangeNotice")]
public sealed record ChangeNotice(
    [property: Id(0), JsonPropertyName("table")] string? Table,
    [property: Id(1), JsonPropertyName("site")] long Site,
    [property: Id(2), JsonPropertyName("users")] ImmutableArray<long>? Users,
    [property: Id(3), JsonPropertyName("views")] ImmutableArray<string>? Views)
{
    /// <summary>The <c>NOTIFY</c> channel of the <see cref="ChangeSource.Notify"/> source.</summary>
    public const string Channel = "statscache_changes";

    /// <summary>The prefix of the logical decoding messages (<c>pg_logical_emit_message</c>) of the <see cref="ChangeSource.Replication"/> source.</summary>
    public const string MessagePrefix = "statscache";

    /// <summary>Reads a notice's JSON; null when it is not one (the channel and the messages are open to any database user).</summary>
    public static ChangeNotice? TryParse(ReadOnlySpan<byte> json)
    {
        try
        {
            var notice = JsonSerializer.Deserialize<ChangeNotice>(json);
            return notice is { Site: > 0 } ? notice : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public string ToJson() => JsonSerializer.Serialize(this, SerializerOptions);

    /// <summary>
    /// Publishes the notice on <paramref name="source"/>'s channel, in the order of the database's commits: a transactional
    /// logical decoding message in the WAL, or a <c>NOTIFY</c>.
    /// </summary>
    public async Task PublishAsync(NpgsqlDataSource dataSource, ChangeSource source, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(source == ChangeSource.Replication
            ? "select pg_logical_emit_message(true, @channel, @payload)"
            : "select pg_notify(@channel, @payload)");
        command.Parameters.AddWithValue("channel", source == ChangeSource.Replication ? MessagePrefix : Channel);
        command.Parameters.AddWithValue("payload", ToJson());
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static readonly JsonSerializerOptions SerializerOptions = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
}
