using Npgsql;
using StatsCache.Changes;
using StatsCache.WebHost.Setup;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The PostgreSQL that ./test.sh starts, named by <c>ConnectionStrings__Stats</c> as for the service.
/// The schema is applied once per run (with the change feed's default SQL, for the WAL source); every test makes its
/// own website, so tests stay independent.
/// </summary>
public sealed class TestDatabase : IAsyncLifetime
{
    public const string ConnectionVariable = "ConnectionStrings__Stats";

    private readonly ChangeFeedSchema? _changes;

    /// <summary>The database of <c>ConnectionStrings__Stats</c> (the only public constructor: an xunit fixture has one).</summary>
    public TestDatabase()
        : this(Environment.GetEnvironmentVariable(ConnectionVariable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException($"{ConnectionVariable} is not set. Run ./test.sh, which starts a throwaway PostgreSQL and sets it."))
    {
    }

    /// <summary>Another database, set up with <paramref name="changes"/> (default: the WAL source's SQL).</summary>
    internal TestDatabase(string connectionString, ChangeFeedSchema? changes = null)
    {
        ConnectionString = connectionString;
        _changes = changes;
    }

    public string ConnectionString { get; }

    public NpgsqlDataSource DataSource { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        DataSource = NpgsqlDataSource.Create(ConnectionString);
        await DatabaseSetup.ApplySchemaAsync(DataSource, changes: _changes);
    }

    public async Task DisposeAsync() => await DataSource.DisposeAsync();

    /// <summary>Inserts one row and returns its generated id.</summary>
    public async Task<long> InsertAsync(string sql, params (string Name, object? Value)[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql + " returning id");
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return (long)(await command.ExecuteScalarAsync())!;
    }

    public async Task ExecuteAsync(string sql, params (string Name, object? Value)[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        await command.ExecuteNonQueryAsync();
    }

    public Task<long> NewWebsiteAsync() =>
        InsertAsync("insert into websites (name, domain) values (@name, @domain)",
            ("name", "test site"), ("domain", $"t{Guid.NewGuid():N}.example"));

    /// <summary>A completed, paid order of one page, created now.</summary>
    public Task<long> NewOrderAsync(long website, long client, decimal price = 10m) =>
        InsertAsync(
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, 'completed', @p, 1, true, now(), now() + interval '1 day')",
            ("w", website), ("c", client), ("p", price));

    public Task<long> NewUserAsync(long website, string role, bool active = true) =>
        InsertAsync("insert into users (website_id, role, username, email, is_active, date_joined) values (@w, @r, @u, @e, @a, now())",
            ("w", website), ("r", role), ("u", $"u{Guid.NewGuid():N}"), ("e", $"{Guid.NewGuid():N}@example.com"), ("a", active));
}

[CollectionDefinition(Name)]
public sealed class DatabaseCollection : ICollectionFixture<TestDatabase>, ICollectionFixture<StatsCacheFactory>
{
    public const string Name = "database";
}
