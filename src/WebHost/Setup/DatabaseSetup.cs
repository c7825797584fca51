using Npgsql;
using StatsCache.Catalog;
using StatsCache.Changes;

namespace StatsCache.WebHost.Setup;

/// <summary>
/// Creates the demo platform schema, what the change feed needs (<see cref="ChangeFeedSchema"/>) and the Orleans providers'
/// tables and statements (idempotent) and, on an empty database, the demo data. The SQL is deploy/sql, embedded in this assembly.
/// </summary>
public static class DatabaseSetup
{
    /// <summary>How much demo data to generate.</summary>
    public sealed record DemoSize(int Sites, int UsersPerSite, int Orders);

    public static readonly DemoSize DefaultDemoSize = new(5, 2000, 100_000);

    /// <summary>The change feed's SQL for the default catalog and settings (the WAL source).</summary>
    public static ChangeFeedSchema DefaultChanges { get; } = new(DashboardCatalog.Load(null), new ChangeFeedOptions());

    /// <summary>
    /// Applies schema.sql, the data generator's definition and <paramref name="changes"/> (default <see cref="DefaultChanges"/>)
    /// to the Stats database, and orleans.sql (membership and grain storage tables and statements) to the Orleans database, which
    /// is the Stats database when <paramref name="orleansDataSource"/> is null. Safe to run any number of times, concurrently too.
    /// </summary>
    public static async Task ApplySchemaAsync(
        NpgsqlDataSource dataSource, NpgsqlDataSource? orleansDataSource = null, ChangeFeedSchema? changes = null, CancellationToken cancellationToken = default)
    {
        await ApplyAsync(dataSource, [ReadSql("schema.sql"), ReadSql("demo-data.sql"), (changes ?? DefaultChanges).ApplySql()], cancellationToken);
        await ApplyAsync(orleansDataSource ?? dataSource, [ReadSql("orleans.sql")], cancellationToken);
    }

    /// <summary>Removes what the change feed added: the slot, the publication and the triggers (<c>setup --remove-changes</c>).</summary>
    public static Task RemoveChangesAsync(NpgsqlDataSource dataSource, ChangeFeedSchema changes, CancellationToken cancellationToken = default) =>
        ApplyAsync(dataSource, [changes.RemoveSql()], cancellationToken);

    /// <summary>Generates demo data when the database has no website yet; returns whether it did.</summary>
    public static async Task<bool> GenerateDemoDataIfEmptyAsync(NpgsqlDataSource dataSource, DemoSize size, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using (var transaction = await connection.BeginTransactionAsync(cancellationToken))
        {
            await ExecuteAsync(connection, "select pg_advisory_xact_lock(hashtext('statscache-setup'))", cancellationToken);
            await using var exists = new NpgsqlCommand("select exists (select 1 from websites)", connection, transaction);
            if ((bool)(await exists.ExecuteScalarAsync(cancellationToken))!)
            {
                return false;
            }

            await using var generate = new NpgsqlCommand("select generate_demo_data(@sites, @users, @orders)", connection, transaction);
            generate.CommandTimeout = 600;
            generate.Parameters.AddWithValue("sites", size.Sites);
            generate.Parameters.AddWithValue("users", size.UsersPerSite);
            generate.Parameters.AddWithValue("orders", size.Orders);
            await generate.ExecuteNonQueryAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
        }

        // The generator analyzes; VACUUM (which a function cannot run) sets the visibility map,
        // without which the views' index-only scans fall back to slower plans. FREEZE makes it
        // aggressive: it waits for pages a concurrent reader (say, autovacuum's analyze) has pinned
        // instead of skipping them, which left most pages unmarked after a plain VACUUM.
        await ExecuteAsync(connection, "vacuum (freeze, analyze)", cancellationToken);
        return true;
    }

    private static async Task ApplyAsync(NpgsqlDataSource dataSource, string[] scripts, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        // Serialise concurrent set-ups (test hosts, silos) so CREATE ... IF NOT EXISTS never races.
        await ExecuteAsync(connection, "select pg_advisory_xact_lock(hashtext('statscache-setup'))", cancellationToken);
        foreach (var script in scripts)
        {
            await ExecuteAsync(connection, script, cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 600 };
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static string ReadSql(string name)
    {
        using var stream = typeof(DatabaseSetup).Assembly.GetManifestResourceStream($"StatsCache.Sql.{name}")
            ?? throw new InvalidOperationException($"deploy/sql/{name} is not embedded in {typeof(DatabaseSetup).Assembly.GetName().Name}.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
