using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace StatsCache.Changes;

/// <summary>
/// One message of the change feed (channel <see cref="Channel"/>): from a table's trigger
/// (<c>{"table": "orders", "site": 1, "users": [42, 7]}</c>, see deploy/sql/changes.sql), or from the
/// invalidation API (<c>{"site": 1, "users": [42], "views": ["client-stats"]}</c>; no users: all of them).
/// </summary>
public sealed record ChangeNotice(
    [property: JsonPropertyName("table")] string? Table,
    [property: JsonPropertyName("site")] long Site,
    [property: JsonPropertyName("users")] ImmutableArray<long>? Users,
    [property: JsonPropertyName("views")] ImmutableArray<string>? Views)
{
    public const string Channel = "statscache_changes";

    /// <summary>Reads a notification's payload; null when it is not one (the channel is open to any database user).</summary>
    public static ChangeNotice? TryParse(string payload)
    {
        try
        {
            var notice = JsonSerializer.Deserialize<ChangeNotice>(payload);
            return notice is { Site: > 0 } ? notice : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public string ToJson() => JsonSerializer.Serialize(this, SerializerOptions);

    private static readonly JsonSerializerOptions SerializerOptions = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
}
