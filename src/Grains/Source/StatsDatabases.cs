using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace StatsCache.Source;

/// <summary>
/// The servers the views read: the primary (<c>ConnectionStrings:Stats</c>, the shared <see cref="NpgsqlDataSource"/>) and its
/// read replicas (<see cref="SourceOptions.Replicas"/>), each with a data source of its own.
/// </summary>
public sealed class StatsDatabases : IAsyncDisposable
{
    public StatsDatabases(NpgsqlDataSource primary, IOptions<SourceOptions> options, ILoggerFactory loggerFactory)
    {
        Primary = primary;
        Replicas = [.. options.Value.Replicas.Select((connectionString, i) =>
        {
            var builder = new NpgsqlDataSourceBuilder(connectionString);
            builder.UseLoggerFactory(loggerFactory);
            var settings = builder.ConnectionStringBuilder;
            return new ReplicaServer($"replica-{i}", $"{settings.Host}:{settings.Port}", builder.Build());
        })];
    }

    public NpgsqlDataSource Primary { get; }

    public IReadOnlyList<ReplicaServer> Replicas { get; }

    public async ValueTask DisposeAsync()
    {
        foreach (var replica in Replicas)
        {
            await replica.DataSource.DisposeAsync();
        }
    }
}

/// <summary>A read replica: <see cref="Name"/> in metrics and health (<c>replica-0</c>, …), <see cref="Address"/> (host and port, no secret) in logs.</summary>
public sealed record ReplicaServer(string Name, string Address, NpgsqlDataSource DataSource);
