using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using StatsCache.Changes;
using StatsCache.WebHost.Api;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The change feed on real PostgreSQL, for each source (<see cref="ReplicationChangeFeedTests"/>,
/// <see cref="NotifyChangeFeedTests"/>): every kind of row change reaches the entries it affects, and only those, within a second.
/// </summary>
public abstract class ChangeFeedTests(TestDatabase db, ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    protected abstract ChangeSource Source { get; }

    protected TestDatabase Db { get; } = db;

    protected ITestOutputHelper Output { get; } = output;

    protected StatsCacheFactory Web { get; } = new();

    public async Task InitializeAsync()
    {
        Web.Settings["ConnectionStrings:Stats"] = Db.ConnectionString;
        Web.Settings["StatsCache:Changes:IsEnabled"] = "true";
        Web.Settings["StatsCache:Changes:Source"] = Source.ToString();
        Web.CreateClient().Dispose(); // start the host, and with it the silo's change feed
        await WaitUntilListeningAsync(Web, Db.DataSource);
    }

    public async Task DisposeAsync() => await Web.DisposeAsync();

    [Fact]
    public async Task CommittedOrderIsVisibleToItsClientAndTheSiteAdminsWithinASecond()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        var admin = await Db.NewUserAsync(site, "admin");
        Assert.Equal(0, await ClientOrdersAsync(site, client));
        Assert.Equal(0, await SiteOrdersAsync(site, admin));

        var written = Stopwatch.StartNew();
        await Db.NewOrderAsync(site, client);
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1, "the client's view shows the order");
        var clientVisible = written.Elapsed;
        await WaitUntilAsync(async () => await SiteOrdersAsync(site, admin) == 1, "the admin's view shows the order");
        var adminVisible = written.Elapsed;

        Output.WriteLine($"write to visible: client {clientVisible.TotalMilliseconds:F0} ms, admin {adminVisible.TotalMilliseconds:F0} ms");
        Assert.True(clientVisible < TimeSpan.FromSeconds(1), $"The client saw the order after {clientVisible.TotalMilliseconds:F0} ms.");
        Assert.True(adminVisible < TimeSpan.FromSeconds(1), $"The admin saw the order after {adminVisible.TotalMilliseconds:F0} ms.");
    }

    [Fact]
    public async Task UpdatedOrderIsVisibleWithinASecond()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        var order = await Db.NewOrderAsync(site, client);
        Assert.Equal(0, await ClientSummaryAsync(site, client, "cancelled"));

        var written = Stopwatch.StartNew();
        await Db.ExecuteAsync("update orders set status = 'cancelled' where id = @id", ("id", order));
        await WaitUntilAsync(async () => await ClientSummaryAsync(site, client, "cancelled") == 1, "the cancellation shown");
        AssertWithinASecond(written, "update");
    }

    [Fact]
    public async Task OrderMovedToAnotherClientLeavesOneDashboardAndReachesTheOtherWithinASecond()
    {
        var site = await Db.NewWebsiteAsync();
        var from = await Db.NewUserAsync(site, "client");
        var to = await Db.NewUserAsync(site, "client");
        var order = await Db.NewOrderAsync(site, from);
        Assert.Equal(1, await ClientOrdersAsync(site, from));
        Assert.Equal(0, await ClientOrdersAsync(site, to));

        // The old row names the client it leaves: with the default replica identity the WAL would carry only its id.
        var written = Stopwatch.StartNew();
        await Db.ExecuteAsync("update orders set client_id = @to where id = @id", ("to", to), ("id", order));
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, from) == 0 && await ClientOrdersAsync(site, to) == 1, "the order moved");
        AssertWithinASecond(written, "move");
    }

    [Fact]
    public async Task DeletedOrderLeavesItsClientsDashboardWithinASecond()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        var order = await Db.NewOrderAsync(site, client);
        Assert.Equal(1, await ClientOrdersAsync(site, client));

        var written = Stopwatch.StartNew();
        await Db.ExecuteAsync("delete from orders where id = @id", ("id", order));
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 0, "the deletion shown");
        AssertWithinASecond(written, "delete");
    }

    [Fact]
    public async Task ChangeForOneClientRefreshesNoOtherUserOrSite()
    {
        var site = await Db.NewWebsiteAsync();
        var otherSite = await Db.NewWebsiteAsync();
        var alice = await Db.NewUserAsync(site, "client");
        var bob = await Db.NewUserAsync(site, "client");
        var carol = await Db.NewUserAsync(otherSite, "client");
        var bobsAsOf = await AsOfAsync(site, "client", bob, "client-stats");
        var carolsAsOf = await AsOfAsync(otherSite, "client", carol, "client-stats");
        await ClientOrdersAsync(site, alice);

        await Db.NewOrderAsync(site, alice);
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, alice) == 1, "Alice's view shows her order");

        // Alice's reload has happened, so the change was routed; anything else it touched would have reloaded with it.
        Assert.Equal(bobsAsOf, await AsOfAsync(site, "client", bob, "client-stats"));
        Assert.Equal(carolsAsOf, await AsOfAsync(otherSite, "client", carol, "client-stats"));
    }

    [Fact]
    public async Task ThousandInsertsForOneClientCauseOnlyAFewReloads()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        await ClientOrdersAsync(site, client);
        using var metrics = new MetricsRecorder(Web.Services);

        var writing = Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, 1000), new ParallelOptions { MaxDegreeOfParallelism = 8 },
            async (_, _) => await Db.NewOrderAsync(site, client));
        var wrote = writing.Elapsed;
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1000, "all 1,000 orders visible");

        var loads = metrics.Total("statscache.loads", "client-stats", "success");
        Output.WriteLine($"1,000 inserts in {wrote.TotalMilliseconds:F0} ms caused {loads} reloads of client-stats");
        Assert.InRange(loads, 1, 12);
    }

    [Fact]
    public async Task InvalidationApiReloadsTheNamedEntriesOnly()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        var other = await Db.NewUserAsync(site, "client");
        var service = await Db.NewUserAsync(site, "support");
        var asOf = await AsOfAsync(site, "client", client, "client-stats");
        var othersAsOf = await AsOfAsync(site, "client", other, "client-stats");

        var http = Web.ClientFor(site, InvalidationApi.ServiceRole, service);
        var response = await http.PostAsJsonAsync("/api/dashboards/invalidate", new { site, users = new[] { client }, views = new[] { "client-stats" } });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);

        // Nothing changed in the data: only a reload moves the snapshot's time.
        await WaitUntilAsync(async () => await AsOfAsync(site, "client", client, "client-stats") != asOf, "the invalidated entry reloaded");
        Assert.Equal(othersAsOf, await AsOfAsync(site, "client", other, "client-stats"));
    }

    protected void AssertWithinASecond(Stopwatch written, string what)
    {
        Output.WriteLine($"{what}: write to visible {written.Elapsed.TotalMilliseconds:F0} ms");
        Assert.True(written.Elapsed < TimeSpan.FromSeconds(1), $"The {what} showed after {written.Elapsed.TotalMilliseconds:F0} ms.");
    }

    protected async Task<long> ClientOrdersAsync(long site, long client) => await ClientSummaryAsync(site, client, "total_orders");

    protected async Task<long> ClientSummaryAsync(long site, long client, string field) =>
        (await DataAsync(site, "client", client, "client-stats")).GetProperty("summary").GetProperty(field).GetInt64();

    protected async Task<long> SiteOrdersAsync(long site, long admin) =>
        (await DataAsync(site, "admin", admin, "admin-overview")).GetProperty("orders_by_status").GetProperty("total").GetInt64();

    private async Task<JsonElement> DataAsync(long site, string role, long user, string view) =>
        (await Web.ClientFor(site, role, user).GetFromJsonAsync<JsonElement>($"/api/dashboards/{view}")).GetProperty("data");

    protected async Task<string> AsOfAsync(long site, string role, long user, string view) =>
        (await Web.ClientFor(site, role, user).GetFromJsonAsync<JsonElement>($"/api/dashboards/{view}")).GetProperty("asOf").GetString()!;

    /// <summary>
    /// Waits until <paramref name="web"/>'s own change feed delivers: it publishes a probe notice (a table no view reads, a site
    /// nobody has) on the host's source until that host routes one. Counting every feed of the shared database would also
    /// count other tests' hosts, and a write made before this host's feed reads would never reach it.
    /// </summary>
    internal static async Task WaitUntilListeningAsync(StatsCacheFactory web, Npgsql.NpgsqlDataSource database)
    {
        using var metrics = new MetricsRecorder(web.Services);
        var source = web.Services.GetRequiredService<IOptions<ChangeFeedOptions>>().Value.Source;
        var probe = new ChangeNotice("listening_probe", long.MaxValue, [], null);
        await WaitUntilAsync(async () =>
        {
            await probe.PublishAsync(database, source, CancellationToken.None);
            await Task.Delay(TimeSpan.FromMilliseconds(20));
            return metrics.Total("statscache.changes", "listening_probe") > 0;
        }, "the change feed listening");
    }

    protected static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var started = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(started.Elapsed < Deadline, $"Waited {Deadline.TotalSeconds} s for {what}.");
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }
}

/// <summary>The WAL source (the default) on the shared test database, which <c>setup</c> prepared for it.</summary>
[Collection(DatabaseCollection.Name)]
public sealed class ReplicationChangeFeedTests(TestDatabase db, ITestOutputHelper output) : ChangeFeedTests(db, output)
{
    protected override ChangeSource Source => ChangeSource.Replication;

    [Fact]
    public async Task NoTriggerIsInThePlatformsTablesAndThePublicationHoldsEveryTableTheViewsRead()
    {
        Assert.Equal(0L, await ScalarAsync<long>("select count(*) from pg_trigger where tgname = 'statscache_change'"));
        var published = await ScalarAsync<string[]>(
            "select array_agg(tablename::text order by tablename) from pg_publication_tables where pubname = 'statscache'");
        var declared = Web.Services.GetRequiredService<Catalog.DashboardCatalog>().Tables.Keys.Order(StringComparer.Ordinal);
        Assert.Equal(declared, published);
        Assert.Equal(0L, await ScalarAsync<long>(
            "select count(*) from pg_class where relname = any(@tables) and relreplident <> 'f'", ("tables", published)));
    }

    [Fact]
    public async Task AnOrdersSnapshotRemembersTheWalPositionOfTheChangeItIncludes()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        Assert.Equal(0, await ClientOrdersAsync(site, client));
        var before = (ulong)NpgsqlTypes.NpgsqlLogSequenceNumber.Parse(await ScalarAsync<string>("select pg_current_wal_lsn()::text"));

        await Db.NewOrderAsync(site, client);
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1, "the order shown");

        var grain = Web.Services.GetRequiredService<DashboardGrains>().User(site, "client", client);
        var result = await grain.GetAsync(new DashboardRequest("client-stats", ""));
        Assert.True(result.Snapshot!.Lsn > before, $"The snapshot's LSN {result.Snapshot.Lsn} is not past the WAL position {before} before the write.");
    }

    [Fact]
    public async Task HundredThousandRowUpdateCostsOneLoadPerAffectedActiveEntry()
    {
        var site = await Db.NewWebsiteAsync();
        var clients = new List<long>();
        for (var i = 0; i < 50; i++)
        {
            clients.Add(await Db.NewUserAsync(site, "client"));
        }

        var admin = await Db.NewUserAsync(site, "admin");
        using (var inserted = new MetricsRecorder(Web.Services))
        {
            await Db.ExecuteAsync(
                "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
                "select @site, (@clients)[1 + n % 50], 'completed', 10, 1, true, now(), now() + interval '1 day' from generate_series(1, 100000) n",
                ("site", site), ("clients", clients.ToArray()));
            await inserted.WaitForAsync("statscache.changes.rows", "orders", 100000, timeout: TimeSpan.FromSeconds(60));
            await WaitUntilListeningAsync(Web, Db.DataSource); // the insert's batch is routed (before the probe): it finds nothing cached
        }

        var active = clients.Take(20).ToList(); // the other 30 clients have nothing cached
        foreach (var client in active)
        {
            Assert.Equal(2000, await ClientOrdersAsync(site, client));
        }

        Assert.Equal(100000, await SiteOrdersAsync(site, admin));
        using var metrics = new MetricsRecorder(Web.Services);

        var updating = Stopwatch.StartNew();
        await Db.ExecuteAsync("update orders set status = 'cancelled' where website_id = @site", ("site", site));
        var updated = updating.Elapsed;
        await metrics.WaitForAsync("statscache.changes.rows", "orders", 100000, timeout: TimeSpan.FromSeconds(60));
        var decoded = updating.Elapsed;
        await metrics.WaitForAsync("statscache.loads", "client-stats", active.Count, "success", TimeSpan.FromSeconds(30));
        await metrics.WaitForAsync("statscache.loads", "admin-overview", 1, "success");

        // Give a second batch (there must be none) the time to arrive: the debounce, and a reload, twice over.
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(2000, await ClientSummaryAsync(site, active[^1], "cancelled"));
        Output.WriteLine($"100,000-row update in {updated.TotalMilliseconds:F0} ms, decoded {decoded.TotalMilliseconds:F0} ms after it began; " +
            $"{metrics.Total("statscache.changes.rows", "orders")} rows decoded, " +
            $"{metrics.Total("statscache.loads")} loads, {metrics.Total("statscache.changes.invalidations")} grain calls");
        Assert.Equal(active.Count, metrics.Total("statscache.loads", "client-stats", "success"));
        Assert.Equal(1, metrics.Total("statscache.loads", "admin-overview", "success"));
        Assert.Equal(100000, metrics.Total("statscache.changes.rows", "orders"));
        Assert.Equal(active.Count + 1, metrics.Total("statscache.changes.invalidations")); // each active grain told once, the site's too
    }

    [Fact]
    public async Task KilledReplicationConnectionResumesWhereItConfirmedAndRefreshesOnlyWhatChanged()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        var bystander = await Db.NewUserAsync(site, "client");
        Assert.Equal(0, await ClientOrdersAsync(site, client));
        var bystandersAsOf = await AsOfAsync(site, "client", bystander, "client-stats");
        using var metrics = new MetricsRecorder(Web.Services);

        // The host's walsender (found by its slot), ended as a network failure or a server restart would end it.
        Assert.Equal(1L, await ScalarAsync<long>(
            "select count(*) from pg_replication_slots where slot_name = @slot and pg_terminate_backend(active_pid)", ("slot", Web.SlotName)));
        await Db.NewOrderAsync(site, client); // while the feed reconnects: only the slot's confirmed position can bring it

        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1, "the order shown after the feed reconnected");
        Assert.Equal(bystandersAsOf, await AsOfAsync(site, "client", bystander, "client-stats"));
        Assert.Equal(0, metrics.Total("statscache.changes", "all")); // no refresh of everything
    }

    [Theory]
    [InlineData("not json", 400, "The body must be JSON")]
    [InlineData("{}", 400, "Field 'site'")]
    [InlineData("{\"site\": -1}", 400, "Field 'site'")]
    [InlineData("{\"site\": 999999999}", 403, "token's own site")]
    [InlineData("{\"site\": {site}, \"users\": [0]}", 400, "Field 'users'")]
    [InlineData("{\"site\": {site}, \"views\": [\"nope\"]}", 400, "unknown view 'nope'")]
    public async Task InvalidationApiRefusesBadBodiesWithProblems(string body, int status, string title)
    {
        var site = await Db.NewWebsiteAsync();
        var http = Web.ClientFor(site, InvalidationApi.ServiceRole, 1);
        var response = await http.PostAsync("/api/dashboards/invalidate",
            new StringContent(body.Replace("{site}", site.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal), Encoding.UTF8, "application/json"));
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains(title, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("title").GetString());
    }

    [Fact]
    public async Task OnlyTheServiceRoleMayInvalidate()
    {
        var site = await Db.NewWebsiteAsync();
        var response = await Web.ClientFor(site, "admin", 1).PostAsJsonAsync("/api/dashboards/invalidate", new { site });
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
    }

    private async Task<T> ScalarAsync<T>(string sql, params (string Name, object Value)[] parameters)
    {
        await using var command = Db.DataSource.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }
}

/// <summary>The triggers' source, on a database of its own that <c>setup</c> prepared for it (triggers, no publication).</summary>
[Collection(DatabaseCollection.Name)]
public sealed class NotifyChangeFeedTests(NotifyChangeFeedTests.NotifyDatabase notifyDb, ITestOutputHelper output)
    : ChangeFeedTests(notifyDb.Database, output), IClassFixture<NotifyChangeFeedTests.NotifyDatabase>
{
    protected override ChangeSource Source => ChangeSource.Notify;

    [Fact]
    public async Task ListenerWhoseConnectionIsKilledReconnectsAndCatchesUp()
    {
        var site = await Db.NewWebsiteAsync();
        var client = await Db.NewUserAsync(site, "client");
        Assert.Equal(0, await ClientOrdersAsync(site, client));
        using var metrics = new MetricsRecorder(Web.Services);

        int killed;
        await using (var kill = Db.DataSource.CreateCommand(
            // Materialised first, so pg_terminate_backend only ever sees the listener's pid.
            "with l as materialized (select pid from pg_stat_activity where application_name = @name and datname = current_database()) " +
            "select pid from l where pg_terminate_backend(pid)"))
        {
            kill.Parameters.AddWithValue("name", NotifyChangeFeed.ApplicationName);
            killed = (int)(await kill.ExecuteScalarAsync())!;
        }

        await WaitUntilAsync(async () => !await BackendExistsAsync(killed), "the listener's connection gone");

        // A write no trigger announces: only the refresh of every active entry after reconnecting can show it.
        await Db.ExecuteAsync(
            "begin; set local session_replication_role = replica; " +
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, 'completed', 10, 1, true, now(), now() + interval '1 day'); commit;",
            ("w", site), ("c", client));

        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1, "the order shown after the listener reconnected");
        Assert.True(metrics.Total("statscache.changes.connects") >= 1, "The listener's reconnection was not counted.");
    }

    private async Task<bool> BackendExistsAsync(int pid)
    {
        await using var command = Db.DataSource.CreateCommand("select exists (select 1 from pg_stat_activity where pid = @pid)");
        command.Parameters.AddWithValue("pid", pid);
        return (bool)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>A database of the Notify tests' own, set up for the triggers' source; dropped at the end.</summary>
    public sealed class NotifyDatabase : IAsyncLifetime
    {
        private readonly string _name = $"statscache_notify_{Guid.NewGuid():N}";
        private readonly string _server = Environment.GetEnvironmentVariable(TestDatabase.ConnectionVariable)
            ?? throw new InvalidOperationException($"{TestDatabase.ConnectionVariable} is not set. Run ./test.sh.");

        public TestDatabase Database { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            await using (var server = Npgsql.NpgsqlDataSource.Create(_server))
            {
                await server.CreateCommand($"create database {_name}").ExecuteNonQueryAsync();
            }

            var connectionString = new Npgsql.NpgsqlConnectionStringBuilder(_server) { Database = _name }.ConnectionString;
            Database = new TestDatabase(connectionString, new ChangeFeedSchema(
                Catalog.DashboardCatalog.Load(null), new ChangeFeedOptions { Source = ChangeSource.Notify }));
            await Database.InitializeAsync();
        }

        public async Task DisposeAsync()
        {
            await Database.DisposeAsync();
            await using var server = Npgsql.NpgsqlDataSource.Create(_server);
            await server.CreateCommand($"drop database if exists {_name} with (force)").ExecuteNonQueryAsync();
        }
    }
}
