using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using StatsCache.Cache;
using StatsCache.Changes;
using StatsCache.WebHost.Api;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The change feed on real PostgreSQL: the triggers of deploy/sql/changes.sql notify, the silo's
/// listener routes each change to the entries it affects, and they reload within a second.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class ChangeFeedTests(TestDatabase db, ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private readonly StatsCacheFactory _factory = new();

    public async Task InitializeAsync()
    {
        _factory.Settings["StatsCache:Changes:IsEnabled"] = "true";
        _factory.CreateClient().Dispose(); // start the host, and with it the silo's listener
        await WaitUntilListeningAsync(_factory, db);
    }

    public async Task DisposeAsync() => await _factory.DisposeAsync();

    [Fact]
    public async Task CommittedOrderIsVisibleToItsClientAndTheSiteAdminsWithinASecond()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var admin = await db.NewUserAsync(site, "admin");
        Assert.Equal(0, await ClientOrdersAsync(site, client));
        Assert.Equal(0, await SiteOrdersAsync(site, admin));

        var written = Stopwatch.StartNew();
        await InsertOrderAsync(site, client);
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1, "the client's view shows the order");
        var clientVisible = written.Elapsed;
        await WaitUntilAsync(async () => await SiteOrdersAsync(site, admin) == 1, "the admin's view shows the order");
        var adminVisible = written.Elapsed;

        output.WriteLine($"write to visible: client {clientVisible.TotalMilliseconds:F0} ms, admin {adminVisible.TotalMilliseconds:F0} ms");
        Assert.True(clientVisible < TimeSpan.FromSeconds(1), $"The client saw the order after {clientVisible.TotalMilliseconds:F0} ms.");
        Assert.True(adminVisible < TimeSpan.FromSeconds(1), $"The admin saw the order after {adminVisible.TotalMilliseconds:F0} ms.");
    }

    [Fact]
    public async Task ChangeForOneClientRefreshesNoOtherUserOrSite()
    {
        var site = await db.NewWebsiteAsync();
        var otherSite = await db.NewWebsiteAsync();
        var alice = await db.NewUserAsync(site, "client");
        var bob = await db.NewUserAsync(site, "client");
        var carol = await db.NewUserAsync(otherSite, "client");
        var bobsAsOf = await AsOfAsync(site, "client", bob, "client-stats");
        var carolsAsOf = await AsOfAsync(otherSite, "client", carol, "client-stats");
        await ClientOrdersAsync(site, alice);

        await InsertOrderAsync(site, alice);
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, alice) == 1, "Alice's view shows her order");

        // Alice's reload has happened, so the notice was routed; anything else it touched would have reloaded with it.
        Assert.Equal(bobsAsOf, await AsOfAsync(site, "client", bob, "client-stats"));
        Assert.Equal(carolsAsOf, await AsOfAsync(otherSite, "client", carol, "client-stats"));
    }

    [Fact]
    public async Task ThousandInsertsForOneClientCauseOnlyAFewReloads()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        await ClientOrdersAsync(site, client);
        using var loads = new StatsCacheCounter("statscache.loads", "view", "client-stats");

        var writing = Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, 1000), new ParallelOptions { MaxDegreeOfParallelism = 8 },
            async (_, _) => await InsertOrderAsync(site, client));
        var wrote = writing.Elapsed;
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1000, "all 1,000 orders visible");

        output.WriteLine($"1,000 inserts in {wrote.TotalMilliseconds:F0} ms caused {loads.Count} reloads of client-stats");
        Assert.InRange(loads.Count, 1, 12);
    }

    [Fact]
    public async Task ListenerWhoseConnectionIsKilledReconnectsAndCatchesUp()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        Assert.Equal(0, await ClientOrdersAsync(site, client));
        using var reconnects = new StatsCacheCounter("statscache.changes.connects", "reconnect", true);

        int killed;
        await using (var kill = db.DataSource.CreateCommand(
            // Materialised first, so pg_terminate_backend only ever sees the listener's pid.
            "with l as materialized (select pid from pg_stat_activity where application_name = @name) " +
            "select pid from l where pg_terminate_backend(pid)"))
        {
            kill.Parameters.AddWithValue("name", NotifyChangeFeed.ApplicationName);
            killed = (int)(await kill.ExecuteScalarAsync())!;
        }

        await WaitUntilAsync(async () => !await BackendExistsAsync(killed), "the listener's connection gone");

        // A write no trigger announces: only the refresh of every active entry after reconnecting can show it.
        await InsertSilentlyAsync(site, client);

        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1, "the order shown after the listener reconnected");
        Assert.True(await ListenersAsync(db) > 0);
        Assert.True(reconnects.Count >= 1, "The listener's reconnection was not counted.");
    }

    [Fact]
    public async Task InvalidationApiRefreshesWhatTriggersDidNotSee()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var service = await db.NewUserAsync(site, "support");
        Assert.Equal(0, await ClientOrdersAsync(site, client));

        // A write the triggers do not see (as from a system writing elsewhere).
        await InsertSilentlyAsync(site, client);

        var http = _factory.ClientFor(site, InvalidationApi.ServiceRole, service);
        var response = await http.PostAsJsonAsync("/api/dashboards/invalidate", new { site, users = new[] { client }, views = new[] { "client-stats" } });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        await WaitUntilAsync(async () => await ClientOrdersAsync(site, client) == 1, "the invalidated view reloaded");
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
        var site = await db.NewWebsiteAsync();
        var http = _factory.ClientFor(site, InvalidationApi.ServiceRole, 1);
        var response = await http.PostAsync("/api/dashboards/invalidate",
            new StringContent(body.Replace("{site}", site.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal), Encoding.UTF8, "application/json"));
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains(title, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("title").GetString());
    }

    [Fact]
    public async Task OnlyTheServiceRoleMayInvalidate()
    {
        var site = await db.NewWebsiteAsync();
        var response = await _factory.ClientFor(site, "admin", 1).PostAsJsonAsync("/api/dashboards/invalidate", new { site });
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
    }

    private async Task<long> ClientOrdersAsync(long site, long client) =>
        (await DataAsync(site, "client", client, "client-stats")).GetProperty("summary").GetProperty("total_orders").GetInt64();

    private async Task<long> SiteOrdersAsync(long site, long admin) =>
        (await DataAsync(site, "admin", admin, "admin-overview")).GetProperty("orders_by_status").GetProperty("total").GetInt64();

    private async Task<JsonElement> DataAsync(long site, string role, long user, string view) =>
        (await _factory.ClientFor(site, role, user).GetFromJsonAsync<JsonElement>($"/api/dashboards/{view}")).GetProperty("data");

    private async Task<string> AsOfAsync(long site, string role, long user, string view) =>
        (await _factory.ClientFor(site, role, user).GetFromJsonAsync<JsonElement>($"/api/dashboards/{view}")).GetProperty("asOf").GetString()!;

    private Task InsertOrderAsync(long site, long client) =>
        db.ExecuteAsync(
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, 'completed', 10, 1, true, now(), now() + interval '1 day')",
            ("w", site), ("c", client));

    // session_replication_role = replica: no trigger fires, so no change is announced.
    private Task InsertSilentlyAsync(long site, long client) =>
        db.ExecuteAsync(
            "begin; set local session_replication_role = replica; " +
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, 'completed', 10, 1, true, now(), now() + interval '1 day'); commit;",
            ("w", site), ("c", client));

    private async Task<bool> BackendExistsAsync(int pid)
    {
        await using var command = db.DataSource.CreateCommand("select exists (select 1 from pg_stat_activity where pid = @pid)");
        command.Parameters.AddWithValue("pid", pid);
        return (bool)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// Waits until <paramref name="web"/>'s own listener receives notices: it sends a probe notice (a table no view
    /// reads, a site nobody has) until that host counts one. Counting every listener of the shared database would
    /// also count other tests' hosts, and a write made before this host listens would never reach it.
    /// </summary>
    internal static async Task WaitUntilListeningAsync(StatsCacheFactory web, TestDatabase db)
    {
        using var metrics = new MetricsRecorder(web.Services);
        var payload = new ChangeNotice("listening_probe", long.MaxValue, [], null).ToJson();
        await WaitUntilAsync(async () =>
        {
            await db.ExecuteAsync("select pg_notify(@channel, @payload)", ("channel", ChangeNotice.Channel), ("payload", payload));
            await Task.Delay(TimeSpan.FromMilliseconds(20));
            return metrics.Total("statscache.changes") > 0;
        }, "the change feed listening");
    }

    /// <summary>The change feed's listening connections on the test database (one per silo with the feed on).</summary>
    internal static async Task<long> ListenersAsync(TestDatabase db)
    {
        // Listening: the connection's last statement is its LISTEN (or the periodic probe after it).
        await using var command = db.DataSource.CreateCommand(
            "select count(*) from pg_stat_activity where application_name = @name and (query ilike 'listen%' or query = 'select 1')");
        command.Parameters.AddWithValue("name", NotifyChangeFeed.ApplicationName);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var started = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(started.Elapsed < Deadline, $"Waited {Deadline.TotalSeconds} s for {what}.");
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }

    /// <summary>Sums one StatsCache counter, for measurements with one tag value, while it lives.</summary>
    private sealed class StatsCacheCounter : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _count;

        public StatsCacheCounter(string instrumentName, string tag, object value)
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == DashboardMetrics.MeterName && instrument.Name == instrumentName)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, measurement, tags, _) =>
            {
                foreach (var pair in tags)
                {
                    if (pair.Key == tag && Equals(pair.Value, value))
                    {
                        Interlocked.Add(ref _count, measurement);
                    }
                }
            });
            _listener.Start();
        }

        public long Count => Interlocked.Read(ref _count);

        public void Dispose() => _listener.Dispose();
    }
}
