using Npgsql;
using StatsCache.Catalog;
using StatsCache.Changes;
using StatsCache.WebHost.Setup;

namespace StatsCache.Integration.Tests;

/// <summary>
/// What the change feed puts in the platform's database, derived from the catalog's tables (<see cref="ChangeFeedSchema"/>),
/// on databases of the tests' own: each source's setup removes the other's, and removing it leaves the database as it was.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class ChangeFeedSetupTests(TestDatabase db)
{
    private static readonly DashboardCatalog Catalog = DashboardCatalog.Load(null);

    [Fact]
    public async Task EachSourcesSetupRemovesTheOthersAndRemovingLeavesTheDatabaseAsItWas()
    {
        await using var database = await TemporaryDatabase.CreateAsync(db);
        await using var data = NpgsqlDataSource.Create(database.ConnectionString);
        var slot = ReplicationSlots.NewName();
        var notify = new ChangeFeedSchema(Catalog, new ChangeFeedOptions { Source = ChangeSource.Notify, SlotName = slot });
        var replication = new ChangeFeedSchema(Catalog, new ChangeFeedOptions { SlotName = slot });

        // The platform's tables as a DBA left them: one with its primary key as replica identity.
        await DatabaseSetup.ApplySchemaAsync(data, changes: notify);
        await ExecuteAsync(data, "alter table writer_levels replica identity using index writer_levels_pkey");
        var before = await IdentitiesAsync(data);
        Assert.Equal(Catalog.Tables.Count, await ScalarAsync<long>(data, "select count(*) from pg_trigger where tgname = 'statscache_change'"));
        Assert.False(await ScalarAsync<bool>(data, "select exists (select 1 from pg_publication)"));

        // The WAL source: a publication of every declared table, replica identity FULL, no trigger, and then a consumer's slot.
        await DatabaseSetup.ApplySchemaAsync(data, changes: replication);
        Assert.Equal(0L, await ScalarAsync<long>(data, "select count(*) from pg_trigger where tgname = 'statscache_change'"));
        Assert.False(await ScalarAsync<bool>(data, "select exists (select 1 from pg_proc where proname = 'statscache_notify_change')"));
        Assert.Equal(Catalog.Tables.Keys.Order(StringComparer.Ordinal), await ScalarAsync<string[]>(data,
            "select array_agg(tablename::text order by tablename) from pg_publication_tables where pubname = 'statscache'"));
        Assert.All((await IdentitiesAsync(data)).Values, identity => Assert.Equal("f", identity));
        await ExecuteAsync(data, $"select pg_create_logical_replication_slot('{slot}', 'pgoutput')");

        // Setting up again changes nothing; removing drops the slot, the publication and the triggers, and restores identities.
        await DatabaseSetup.ApplySchemaAsync(data, changes: replication);
        await DatabaseSetup.RemoveChangesAsync(data, replication);
        Assert.False(await ScalarAsync<bool>(data, "select exists (select 1 from pg_replication_slots where slot_name = @slot)", ("slot", slot)));
        Assert.False(await ScalarAsync<bool>(data, "select exists (select 1 from pg_publication)"));
        Assert.Equal(0L, await ScalarAsync<long>(data, "select count(*) from pg_trigger where tgname = 'statscache_change'"));
        Assert.Equal(before, await IdentitiesAsync(data));
        Assert.Equal("i", before["writer_levels"]);
    }

    [Fact]
    public async Task PrintedSqlRunByHandPreparesTheDatabaseAndARoleThatMayStreamAndRead()
    {
        await using var database = await TemporaryDatabase.CreateAsync(db);
        await using var data = NpgsqlDataSource.Create(database.ConnectionString);
        var role = $"statscache_{Guid.NewGuid():N}"[..30];
        await DatabaseSetup.ApplySchemaAsync(data, changes: new ChangeFeedSchema(Catalog, new ChangeFeedOptions { IsEnabled = false }));
        try
        {
            await ExecuteAsync(data, new ChangeFeedSchema(Catalog, new ChangeFeedOptions()).PrintSql(role));

            Assert.True(await ScalarAsync<bool>(data, "select rolreplication and rolcanlogin from pg_roles where rolname = @role", ("role", role)));
            Assert.True(await ScalarAsync<bool>(data, "select has_table_privilege(@role, 'orders', 'select')", ("role", role)));
            Assert.True(await ScalarAsync<bool>(data, "select pg_has_role(@role, 'pg_read_all_stats', 'usage')", ("role", role)));
            Assert.Equal((long)Catalog.Tables.Count, await ScalarAsync<long>(data, "select count(*) from pg_publication_tables where pubname = 'statscache'"));
        }
        finally
        {
            await ExecuteAsync(data, $"drop owned by {role}; drop role {role}"); // roles belong to the server, not the database
        }
    }

    private static async Task<Dictionary<string, string>> IdentitiesAsync(NpgsqlDataSource data)
    {
        await using var command = data.CreateCommand("select relname::text, relreplident::text from pg_class where relname = any(@tables) and relkind = 'r'");
        command.Parameters.AddWithValue("tables", Catalog.Tables.Keys.ToArray());
        await using var reader = await command.ExecuteReaderAsync();
        var identities = new Dictionary<string, string>();
        while (await reader.ReadAsync())
        {
            identities[reader.GetString(0)] = reader.GetString(1);
        }

        return identities;
    }

    private static async Task ExecuteAsync(NpgsqlDataSource data, string sql)
    {
        await using var command = data.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlDataSource data, string sql, params (string Name, object Value)[] parameters)
    {
        await using var command = data.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }
}
