using System.Buffers;
using System.Collections;
using System.Globalization;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using StatsCache.Catalog;

namespace StatsCache.Source;

/// <summary>
/// Runs a view's queries as one <see cref="NpgsqlBatch"/> and writes the rows straight into JSON:
/// numbers stay numbers, timestamps are ISO 8601, NULL is null, json/jsonb columns are embedded as is.
/// With read replicas (<see cref="ReadReplicas"/>), each load runs on the server they choose for its fence, and on the primary
/// when it fails on a replica.
/// </summary>
public sealed class PostgresDashboardSource(NpgsqlDataSource primary, SourceMetrics metrics, ReadReplicas? replicas = null) : IDashboardSource
{
    public async Task<SourceData> LoadAsync(
        ViewDefinition view, DashboardScope scope, BoundParameters parameters, LoadFence fence, CancellationToken cancellationToken)
    {
        if (replicas is null)
        {
            metrics.Load("primary", fence.Reason);
            return new SourceData(await RunAsync(primary, view, scope, parameters, cancellationToken).ConfigureAwait(false), Lsn: 0);
        }

        var target = await replicas.ChooseAsync(fence, cancellationToken).ConfigureAwait(false);
        metrics.Load(target.Name, fence.Reason);
        try
        {
            return new SourceData(await RunAsync(target.DataSource, view, scope, parameters, cancellationToken).ConfigureAwait(false), target.Lsn);
        }
        catch (Exception e) when (target.IsReplica && !cancellationToken.IsCancellationRequested)
        {
            // The primary has everything the replica had (and what the fence asks): the reader gets its answer, not an error.
            replicas.LoadFailed(target, e);
            metrics.Load("primary", fence.Reason);
            return new SourceData(await RunAsync(primary, view, scope, parameters, cancellationToken).ConfigureAwait(false), target.Lsn);
        }
    }

    /// <summary>Runs every query of the view in one round trip on <paramref name="dataSource"/>; returns the <c>data</c> object as UTF-8 JSON.</summary>
    public static async Task<byte[]> RunAsync(
        NpgsqlDataSource dataSource, ViewDefinition view, DashboardScope scope, BoundParameters parameters, CancellationToken cancellationToken)
    {
        await using var batch = dataSource.CreateBatch();
        foreach (var query in view.Queries)
        {
            var command = new NpgsqlBatchCommand(query.Sql);
            foreach (var name in query.SqlParameters)
            {
                command.Parameters.Add(Bind(name, view, scope, parameters));
            }

            batch.BatchCommands.Add(command);
        }

        var buffer = new ArrayBufferWriter<byte>(1024);
        await using (var json = new Utf8JsonWriter(buffer))
        {
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            json.WriteStartObject();
            for (var i = 0; i < view.Queries.Length; i++)
            {
                var query = view.Queries[i];
                if (i > 0 && !await reader.NextResultAsync(cancellationToken).ConfigureAwait(false))
                {
                    throw new InvalidOperationException($"View '{view.Name}': query '{query.Name}' returned no result set.");
                }

                json.WritePropertyName(query.Name);
                await WriteResultAsync(json, reader, view, query, cancellationToken).ConfigureAwait(false);
            }

            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static NpgsqlParameter Bind(string name, ViewDefinition view, DashboardScope scope, BoundParameters parameters) => name switch
    {
        "site_id" => new NpgsqlParameter<long>(name, NpgsqlDbType.Bigint) { TypedValue = scope.SiteId },
        "role" => new NpgsqlParameter<string>(name, NpgsqlDbType.Text) { TypedValue = scope.Role },
        "user_id" => scope.UserId is { } user
            ? new NpgsqlParameter<long>(name, NpgsqlDbType.Bigint) { TypedValue = user }
            : throw new InvalidOperationException($"View '{view.Name}' uses @user_id without a user."),
        _ => new NpgsqlParameter<int>(name, NpgsqlDbType.Integer) { TypedValue = parameters[name] },
    };

    private static async Task WriteResultAsync(
        Utf8JsonWriter json, NpgsqlDataReader reader, ViewDefinition view, QueryDefinition query, CancellationToken cancellationToken)
    {
        var columns = Enumerable.Range(0, reader.FieldCount).Select(i => JsonEncodedText.Encode(reader.GetName(i))).ToArray();
        if (query.Shape == QueryShape.Rows)
        {
            json.WriteStartArray();
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                WriteRow(json, reader, columns);
            }

            json.WriteEndArray();
            return;
        }

        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            json.WriteNullValue();
            return;
        }

        WriteRow(json, reader, columns);
        if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            throw new InvalidOperationException($"View '{view.Name}': query '{query.Name}' is declared 'row' but returned several rows.");
        }
    }

    private static void WriteRow(Utf8JsonWriter json, NpgsqlDataReader reader, JsonEncodedText[] columns)
    {
        json.WriteStartObject();
        for (var i = 0; i < columns.Length; i++)
        {
            json.WritePropertyName(columns[i]);
            if (reader.IsDBNull(i))
            {
                json.WriteNullValue();
                continue;
            }

            switch (reader.GetDataTypeName(i))
            {
                case "json" or "jsonb":
                    json.WriteRawValue(reader.GetString(i), skipInputValidation: true);
                    break;
                case "date":
                    json.WriteStringValue(reader.GetFieldValue<DateOnly>(i).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture));
                    break;
                case "numeric":
                    WriteNumeric(json, reader, i);
                    break;
                default:
                    WriteValue(json, reader.GetValue(i));
                    break;
            }
        }

        json.WriteEndObject();
    }

    // numeric holds values decimal cannot (NaN, very large); those are written as strings rather than failing the load.
    private static void WriteNumeric(Utf8JsonWriter json, NpgsqlDataReader reader, int ordinal)
    {
        try
        {
            json.WriteNumberValue(reader.GetDecimal(ordinal));
        }
        catch (Exception e) when (e is OverflowException or InvalidCastException)
        {
            json.WriteStringValue(reader.GetFieldValue<string>(ordinal));
        }
    }

    private static void WriteValue(Utf8JsonWriter json, object value)
    {
        switch (value)
        {
            case bool b: json.WriteBooleanValue(b); break;
            case short s: json.WriteNumberValue(s); break;
            case int n: json.WriteNumberValue(n); break;
            case long l: json.WriteNumberValue(l); break;
            case decimal m: json.WriteNumberValue(m); break;
            case float f when float.IsFinite(f): json.WriteNumberValue(f); break;
            case double d when double.IsFinite(d): json.WriteNumberValue(d); break;
            case float or double: json.WriteNullValue(); break;
            case string s: json.WriteStringValue(s); break;
            case DateTime { Kind: DateTimeKind.Utc } t: json.WriteStringValue(t.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture)); break;
            case DateTime t: json.WriteStringValue(t.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF", CultureInfo.InvariantCulture)); break;
            case DateTimeOffset t: json.WriteStringValue(t.ToString("O", CultureInfo.InvariantCulture)); break;
            case DateOnly d: json.WriteStringValue(d.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)); break;
            case TimeSpan t: json.WriteNumberValue(t.TotalSeconds); break; // intervals as seconds
            case Guid g: json.WriteStringValue(g); break;
            case Array array and not byte[]:
                json.WriteStartArray();
                foreach (var item in (IEnumerable)array)
                {
                    if (item is null or DBNull)
                    {
                        json.WriteNullValue();
                    }
                    else
                    {
                        WriteValue(json, item);
                    }
                }

                json.WriteEndArray();
                break;
            default: json.WriteStringValue(Convert.ToString(value, CultureInfo.InvariantCulture)); break;
        }
    }
}
