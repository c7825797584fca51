using Npgsql;

namespace StatsCache.Integration.Tests;

/// <summary>
/// A database of its own on the test server, which a test can make refuse connections (as if
/// PostgreSQL were down for it) and accept them again; dropped at the end.
/// </summary>
public sealed class TemporaryDatabase : IAsyncDisposable
{
    private readonly TestDatabase _server;

    private TemporaryDatabase(TestDatabase server, string name, string? password)
    {
        _server = server;
        Name = name;
        ConnectionString = new NpgsqlConnectionStringBuilder(server.ConnectionString) { Database = name, Password = password }.ConnectionString;
    }

    public string Name { get; }

    /// <summary>Names the database; with a password when one was given (the test server trusts local connections, so any works).</summary>
    public string ConnectionString { get; }

    public static async Task<TemporaryDatabase> CreateAsync(TestDatabase server, string? password = null, bool withSchema = false)
    {
        var database = new TemporaryDatabase(server, $"statscache_tmp_{Guid.NewGuid():N}", password);
        await server.ExecuteAsync($"create database {database.Name}");
        if (withSchema)
        {
            await using var dataSource = NpgsqlDataSource.Create(database.ConnectionString);
            await WebHost.Setup.DatabaseSetup.ApplySchemaAsync(dataSource);
        }

        return database;
    }

    /// <summary>New connections are refused and open ones are ended: to its clients, PostgreSQL does not answer.</summary>
    public async Task RefuseConnectionsAsync()
    {
        await _server.ExecuteAsync($"alter database {Name} allow_connections false");
        await _server.ExecuteAsync("select pg_terminate_backend(pid) from pg_stat_activity where datname = @name", ("name", Name));
    }

    public Task AcceptConnectionsAsync() => _server.ExecuteAsync($"alter database {Name} allow_connections true");

    public Task<long> NewWebsiteAsync() =>
        InsertAsync("insert into websites (name, domain) values (@name, @domain)",
            ("name", "test site"), ("domain", $"t{Guid.NewGuid():N}.example"));

    public Task<long> NewUserAsync(long website, string role) =>
        InsertAsync("insert into users (website_id, role, username, email, is_active, date_joined) values (@w, @r, @u, @e, true, now())",
            ("w", website), ("r", role), ("u", $"u{Guid.NewGuid():N}"), ("e", $"{Guid.NewGuid():N}@example.com"));

    private async Task<long> InsertAsync(string sql, params (string Name, object Value)[] parameters)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql + " returning id", connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return (long)(await command.ExecuteScalarAsync())!;
    }

    public async ValueTask DisposeAsync() => await _server.ExecuteAsync($"drop database if exists {Name} with (force)");
}
