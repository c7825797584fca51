using System.Net.Http.Json;
using System.Text.Json;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The WAL feed against faults of its PostgreSQL, each on a server of the test's own (<see cref="ThrowawayPostgres"/>): a
/// restart loses nothing and refreshes only what changed; a slot PostgreSQL invalidated is recreated with one refresh of
/// everything; a server without <c>wal_level=logical</c> stops start-up with what to do.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class ReplicationFaultTests(ITestOutputHelper output)
{
    [Fact]
    public async Task PostgresRestartLosesNoWriteAndReloadsOnlyTheEntriesItChanged()
    {
        await using var pg = await StartPostgresAsync();
        var db = new TestDatabase(pg.ConnectionString);
        await db.InitializeAsync();
        await using var web = await WebAsync(pg);
        var site = await db.NewWebsiteAsync();
        var clients = new List<long>();
        for (var i = 0; i < 20; i++)
        {
            clients.Add(await db.NewUserAsync(site, "client"));
            Assert.Equal(0, await OrdersAsync(web, site, clients[^1]));
        }

        using var metrics = new MetricsRecorder(web.Services);
        await pg.StopAsync();
        await pg.StartAsync();
        db.DataSource.Clear();

        // Written while the feed reconnects: it reaches the grains only if the feed resumes from the slot's confirmed position.
        await db.NewOrderAsync(site, clients[0]);
        await WaitUntilAsync(async () => await OrdersAsync(web, site, clients[0]) == 1, "the order written after the restart shown");

        // One entry changed, one reloaded: the other 19 keep their snapshots (no refresh of everything held).
        await Task.Delay(TimeSpan.FromSeconds(1)); // room for reloads that must not come: the debounce and a load, twice over
        output.WriteLine($"after the restart: {metrics.Total("statscache.loads", "client-stats", "success")} loads, {metrics.Total("statscache.changes", "all")} refreshes of all");
        Assert.Equal(1, metrics.Total("statscache.loads", "client-stats", "success"));
        Assert.Equal(0, metrics.Total("statscache.changes", "all"));
        await db.DisposeAsync();
    }

    [Fact]
    public async Task SlotInvalidatedByMaxSlotWalKeepSizeIsRecreatedWithOneRefreshOfEverything()
    {
        await using var pg = await StartPostgresAsync("max_slot_wal_keep_size=1MB");
        var db = new TestDatabase(pg.ConnectionString);
        await db.InitializeAsync();

        // Another reader holds the slot (as a silo that hangs would) and confirms nothing: the host stands by, serving.
        var slot = ReplicationSlots.NewName();
        await using var holder = new LogicalReplicationConnection(pg.ConnectionString);
        await holder.Open();
        var created = await holder.CreatePgOutputReplicationSlot(slot);
        using var stopHolding = new CancellationTokenSource();
        var holding = Task.Run(async () =>
        {
            await foreach (var _ in holder.StartReplication(created, new PgOutputReplicationOptions("statscache", PgOutputProtocolVersion.V1), stopHolding.Token))
            {
                // read and never confirm, so the slot keeps every byte of WAL since it was made
            }
        });
        await WaitUntilAsync(async () => await SlotAsync(db, slot) is { Active: true }, "the test holding the slot");

        await using var web = await WebAsync(pg, waitUntilListening: false, ("StatsCache:Changes:SlotName", slot));
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        Assert.Equal(0, await OrdersAsync(web, site, client));
        var asOf = await AsOfAsync(web, site, client);
        using var metrics = new MetricsRecorder(web.Services);

        // WAL past max_slot_wal_keep_size, and a checkpoint: PostgreSQL ends the holder and invalidates the slot.
        await db.ExecuteAsync("create table filler (x text)");
        for (var i = 0; i < 4; i++)
        {
            await db.ExecuteAsync("insert into filler select repeat('x', 1000) from generate_series(1, 20000); select pg_switch_wal()");
        }

        await db.ExecuteAsync("checkpoint");
        await Assert.ThrowsAnyAsync<Exception>(() => holding);

        // The host finds the slot lost, recreates it and refreshes what it holds, once; the slot is then streamed again.
        await WaitUntilAsync(async () => await AsOfAsync(web, site, client) != asOf, "the held entry refreshed");
        await WaitUntilAsync(async () => await SlotAsync(db, slot) is { Active: true, Lost: false }, "the recreated slot streamed");
        Assert.Equal(1, metrics.Total("statscache.changes.slot.invalidations"));
        Assert.Equal(1, metrics.Total("statscache.changes", "all"));
        await db.NewOrderAsync(site, client);
        await WaitUntilAsync(async () => await OrdersAsync(web, site, client) == 1, "a write through the recreated slot");
        await db.DisposeAsync();
    }

    [Fact]
    public async Task WalLevelReplicaStopsStartUpWithTheSettingToChangeOrTheOtherSource()
    {
        await using var pg = await StartPostgresAsync("wal_level=replica");
        var web = new StatsCacheFactory();
        web.Settings["ConnectionStrings:Stats"] = pg.ConnectionString;
        web.Settings["StatsCache:Changes:IsEnabled"] = "true";

        var error = Assert.ThrowsAny<Exception>(() => web.Services);
        output.WriteLine(error.Message);
        Assert.Contains("StatsCache:Changes:Source", error.Message);
        Assert.Contains("wal_level=replica", error.Message);
        Assert.Contains("wal_level=logical", error.Message);
        Assert.Contains("Notify", error.Message);
        await web.DisposeAsync();
    }

    [Fact]
    public async Task ACatalogRoutingByAColumnTheTableLacksStopsStartUpNamingIt()
    {
        using var catalog = TestCatalog.WithTables(
            """{ "orders": { "site": "website_id", "users": ["buyer_id"] } }""",
            TestCatalog.View("buyer-orders", TimeSpan.FromMinutes(5), "summary", "row", "select count(*) from orders where website_id = @site_id",
                reads: new Dictionary<string, string> { ["orders"] = "user" }));
        var web = new StatsCacheFactory();
        web.Settings["StatsCache:CatalogPath"] = catalog.Path;
        web.Settings["StatsCache:Changes:IsEnabled"] = "true";

        var error = Assert.ThrowsAny<Exception>(() => web.Services);
        output.WriteLine(error.Message);
        Assert.Contains("orders.buyer_id does not exist", error.Message);
        await web.DisposeAsync();
    }

    private static async Task<ThrowawayPostgres> StartPostgresAsync(params string[] settings)
    {
        var pg = new ThrowawayPostgres(settings);
        await pg.InitializeAsync();
        return pg;
    }

    private static async Task<StatsCacheFactory> WebAsync(ThrowawayPostgres pg, bool waitUntilListening = true, params (string Key, string Value)[] settings)
    {
        var web = StatsCacheFactory.Started(
        [
            ("ConnectionStrings:Stats", pg.ConnectionString),
            ("StatsCache:Changes:IsEnabled", "true"),
            ("StatsCache:Cache:RetryBaseDuration", "00:00:00.100"), // a load that meets the restart is retried soon
            .. settings,
        ]);
        if (waitUntilListening)
        {
            await ChangeFeedTests.WaitUntilListeningAsync(web, pg.DataSource);
        }

        return web;
    }

    private static async Task<long> OrdersAsync(StatsCacheFactory web, long site, long client) =>
        (await GetAsync(web, site, client)).GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64();

    private static async Task<string> AsOfAsync(StatsCacheFactory web, long site, long client) =>
        (await GetAsync(web, site, client)).GetProperty("asOf").GetString()!;

    private static Task<JsonElement> GetAsync(StatsCacheFactory web, long site, long client) =>
        web.ClientFor(site, "client", client).GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats");

    private static async Task<(bool Active, bool Lost)?> SlotAsync(TestDatabase db, string slot)
    {
        await using var command = db.DataSource.CreateCommand(
            "select active, coalesce(wal_status = 'lost', false) from pg_replication_slots where slot_name = @slot");
        command.Parameters.AddWithValue("slot", slot);
        await using var reader = await command.ExecuteReaderAsync();
        return await reader.ReadAsync() ? (reader.GetBoolean(0), reader.GetBoolean(1)) : null;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"Waited 20 s for {what}.");
            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }
    }
}
