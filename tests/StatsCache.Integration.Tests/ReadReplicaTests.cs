using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// Loads on a read replica, fenced by WAL position, against a real primary and a real streaming replica of it
/// (<see cref="ReplicaLab"/>): the dashboards' statements leave the primary, and no load reads data older than it must,
/// whether the replica keeps up, is paused, stops, or outlives the primary.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class ReadReplicaTests(ReplicaLab lab, ITestOutputHelper output) : IClassFixture<ReplicaLab>
{
    // What a write may take to show, with loads on the replica or, past the fence's wait, on the primary.
    private static readonly TimeSpan Visible = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task SteadyReadsAndWritesRunTheDashboardsOnTheReplicaAndShowEveryWriteWithinASecond()
    {
        await using var web = await WebAsync();
        using var metrics = new MetricsRecorder(web.Services);
        var site = await lab.Db.NewWebsiteAsync();
        var clients = new List<long>();
        for (var i = 0; i < 6; i++)
        {
            clients.Add(await lab.Db.NewUserAsync(site, "client"));
        }

        var onPrimary = await ReplicaLab.ClientStatsCallsAsync(lab.Primary);
        var onReplica = await ReplicaLab.ClientStatsCallsAsync(lab.Replica);
        foreach (var client in clients)
        {
            Assert.Equal(0, await OrdersAsync(web, site, client));
        }

        var slowest = TimeSpan.Zero;
        for (var round = 1; round <= 3; round++)
        {
            foreach (var client in clients)
            {
                await lab.Db.NewOrderAsync(site, client);
                slowest = Max(slowest, await TimeUntilAsync(web, site, client, round));
            }
        }

        var primaryCalls = await ReplicaLab.ClientStatsCallsAsync(lab.Primary) - onPrimary;
        var replicaCalls = await ReplicaLab.ClientStatsCallsAsync(lab.Replica) - onReplica;
        output.WriteLine($"client-stats ran {replicaCalls} times on the replica, {primaryCalls} on the primary; slowest write to show: {slowest.TotalMilliseconds:F0} ms");
        Assert.Equal(0, primaryCalls);
        Assert.True(replicaCalls >= clients.Count * 4, $"{replicaCalls} loads on the replica, expected a first load and three reloads per client.");
        Assert.Equal(0, metrics.Total("statscache.source.loads", "primary"));
        Assert.Equal(0, metrics.Total("statscache.source.fallbacks"));
    }

    [Fact]
    public async Task WithReplayPausedAChangeShowsWithinASecondThroughThePrimaryAndResumedLoadsReturnToTheReplica()
    {
        await using var web = await WebAsync();
        var site = await lab.Db.NewWebsiteAsync();
        var client = await lab.Db.NewUserAsync(site, "client");
        Assert.Equal(0, await OrdersAsync(web, site, client));

        using (var paused = new MetricsRecorder(web.Services))
        {
            await lab.PauseReplayAsync();
            try
            {
                await lab.Db.NewOrderAsync(site, client);
                var shown = await TimeUntilAsync(web, site, client, 1);
                output.WriteLine($"paused replica: the write showed after {shown.TotalMilliseconds:F0} ms");

                // The replica had not replayed the change: it served no load that needed it.
                Assert.Equal(0, paused.Total("statscache.source.loads", "replica-0", "change"));
                Assert.Equal(0, paused.Total("statscache.source.loads", "replica-0", "current"));
                Assert.True(paused.Total("statscache.source.loads", "primary", "change") >= 1, "The change was not reloaded on the primary.");
                Assert.True(paused.Total("statscache.source.fallbacks", outcome: "timeout") >= 1, "No load waited out the fence.");
            }
            finally
            {
                await lab.ResumeReplayAsync();
            }
        }

        using var resumed = new MetricsRecorder(web.Services);
        await lab.Db.NewOrderAsync(site, client);
        await TimeUntilAsync(web, site, client, 2);
        Assert.True(resumed.Total("statscache.source.loads", "replica-0", "change") >= 1, "Resumed, the change was not reloaded on the replica.");
        Assert.Equal(0, resumed.Total("statscache.source.loads", "primary"));
    }

    [Fact]
    public async Task AFirstReadRightAfterTheReadersOwnWriteIncludesItWithReplayPaused()
    {
        await using var web = await WebAsync();
        var site = await lab.Db.NewWebsiteAsync();
        using var metrics = new MetricsRecorder(web.Services);
        await lab.PauseReplayAsync();
        try
        {
            // The user and the order exist only on the primary: the replica has replayed neither.
            var client = await lab.Db.NewUserAsync(site, "client");
            await lab.Db.NewOrderAsync(site, client);
            Assert.Equal(1, await OrdersAsync(web, site, client));
            Assert.Equal(0, metrics.Total("statscache.source.loads", "replica-0"));
            Assert.Equal(1, metrics.Total("statscache.source.loads", "primary", "current"));
        }
        finally
        {
            await lab.ResumeReplayAsync();
        }
    }

    [Fact]
    public async Task AReplicaStoppedUnderLoadFailsNoRequestAndLoadsMoveToThePrimaryAndBack()
    {
        await using var web = await WebAsync(("StatsCache:Source:ReplicaRetryDuration", "00:00:01"));
        using var metrics = new MetricsRecorder(web.Services);
        var site = await lab.Db.NewWebsiteAsync();
        var clients = new List<long>();
        for (var i = 0; i < 12; i++)
        {
            clients.Add(await lab.Db.NewUserAsync(site, "client"));
        }

        // Six readers over the clients, a writer adding an order for one of them every 20 ms: loads all the time.
        var statuses = new ConcurrentDictionary<HttpStatusCode, int>();
        var written = new ConcurrentDictionary<long, int>();
        using var stop = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 6).Select(reader => Task.Run(async () =>
        {
            for (var n = reader; !stop.IsCancellationRequested; n += 6)
            {
                using var answer = await web.ClientFor(site, "client", clients[n % clients.Count]).GetAsync("/api/dashboards/client-stats");
                statuses.AddOrUpdate(answer.StatusCode, 1, (_, count) => count + 1);
                await Task.Delay(TimeSpan.FromMilliseconds(5));
            }
        })).ToList();
        var writer = Task.Run(async () =>
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var client = clients[n % clients.Count];
                await lab.Db.NewOrderAsync(site, client);
                written.AddOrUpdate(client, 1, (_, count) => count + 1);
                await Task.Delay(TimeSpan.FromMilliseconds(20));
            }
        });

        try
        {
            await metrics.WaitForAsync("statscache.source.loads", "replica-0", 20);
            await lab.Replica.StopAsync();
            var onPrimary = metrics.Total("statscache.source.loads", "primary");
            await metrics.WaitForAsync("statscache.source.loads", "primary", onPrimary + 20, timeout: TimeSpan.FromSeconds(20));

            await lab.Replica.StartAsync();
            var onReplica = metrics.Total("statscache.source.loads", "replica-0");
            await metrics.WaitForAsync("statscache.source.loads", "replica-0", onReplica + 20, timeout: TimeSpan.FromSeconds(20));
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll([.. readers, writer]);
        }

        output.WriteLine($"answers: {string.Join(", ", statuses.Select(s => $"{(int)s.Key}: {s.Value}"))}; fallbacks for failed loads: {metrics.Total("statscache.source.fallbacks", outcome: "failed")}");
        Assert.Equal([HttpStatusCode.OK], statuses.Keys);
        foreach (var (client, orders) in written)
        {
            await TimeUntilAsync(web, site, client, orders);
        }
    }

    [Fact]
    public async Task WithThePrimaryStoppedEntriesKeepRefreshingFromTheReplicaAndColdReadsAnswer()
    {
        var ttl = TimeSpan.FromSeconds(2);
        using var catalog = TestCatalog.WithTables(
            """{ "orders": { "site": "website_id", "users": ["client_id"] } }""",
            TestCatalog.View("replica-orders", ttl, "summary", "row",
                "select count(*)::bigint as total_orders from orders where website_id = @site_id and client_id = @user_id",
                reads: new Dictionary<string, string> { ["orders"] = "user" }));
        await using var web = await WebAsync(("StatsCache:CatalogPath", catalog.Path));
        var site = await lab.Db.NewWebsiteAsync();
        var warm = await lab.Db.NewUserAsync(site, "client");
        var cold = await lab.Db.NewUserAsync(site, "client");
        await lab.Db.NewOrderAsync(site, cold);
        await GetAsync(web, site, warm, "replica-orders");
        await lab.WaitUntilReplayedAsync();

        await lab.Primary.StopAsync();
        try
        {
            var stoppedAt = DateTimeOffset.UtcNow;

            // Refreshed from the replica after the primary stopped, and not stale.
            var deadline = DateTime.UtcNow + (ttl * 5);
            JsonElement answer;
            while (true)
            {
                answer = await GetAsync(web, site, warm, "replica-orders");
                Assert.False(answer.GetProperty("stale").GetBoolean(), $"Served stale with the replica up: {answer}");
                if (answer.GetProperty("asOf").GetDateTimeOffset() > stoppedAt)
                {
                    break;
                }

                Assert.True(DateTime.UtcNow < deadline, $"Not refreshed in {ttl * 5} after the primary stopped: {answer}");
                await Task.Delay(TimeSpan.FromMilliseconds(100));
            }

            // A first read, with the primary down: loaded on the replica, with what the primary had committed.
            var first = await GetAsync(web, site, cold, "replica-orders");
            Assert.Equal(1, first.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());
            Assert.False(first.GetProperty("stale").GetBoolean());

            // Ready, saying which server is down.
            using var ready = await web.CreateClient().GetAsync("/readyz");
            var health = await ready.Content.ReadAsStringAsync();
            output.WriteLine(health);
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.Contains("primary down, replica-0 up", health);
        }
        finally
        {
            await lab.Primary.StartAsync();
            lab.Db.DataSource.Clear();
            await lab.WaitUntilReplayedAsync();
        }
    }

    [Fact]
    public async Task OnATwoSiloClusterTheFenceHoldsOnEitherSilo()
    {
        var metricsPorts = new[] { StatsCacheFactory.FreePort(), StatsCacheFactory.FreePort() };
        var settings = new Dictionary<string, string>
        {
            ["Orleans:Membership"] = "AdoNet",
            ["Orleans:Storage"] = "AdoNet",
            ["Orleans:ClusterId"] = $"test-{Guid.NewGuid():N}",
            ["StatsCache:Changes:SlotName"] = ReplicationSlots.NewName(),
            ["StatsCache:Source:Replicas:0"] = lab.Replica.ConnectionString,
        };
        await using var silos = new ClusterTests.SiloGroup();
        await silos.StartAsync(lab.Primary.ConnectionString, [.. metricsPorts.Select(port => new Dictionary<string, string>(settings)
        {
            ["Observability:SiloMetricsPort"] = port.ToString(CultureInfo.InvariantCulture),
        })]);
        await using var web = StatsCacheFactory.Started([
            .. settings.Select(s => (s.Key, s.Value)),
            ("Orleans:Mode", "Client"),
            ("ConnectionStrings:Stats", lab.Primary.ConnectionString)]);
        var site = await lab.Db.NewWebsiteAsync();
        var clients = new List<long>();
        for (var i = 0; i < 16; i++)
        {
            clients.Add(await lab.Db.NewUserAsync(site, "client"));
        }

        // Sixteen clients' grains: on both silos but with a chance of 2 in 65,536. The first read waits for the cluster.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while ((await web.ClientFor(site, "client", clients[0]).GetAsync("/api/dashboards/client-stats")).StatusCode != HttpStatusCode.OK)
        {
            Assert.True(DateTime.UtcNow < deadline, "The cluster did not answer in 30 s.");
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }

        foreach (var client in clients)
        {
            Assert.Equal(0, await OrdersAsync(web, site, client));
        }

        using var scrape = new HttpClient();
        var before = await Task.WhenAll(metricsPorts.Select(port => scrape.GetStringAsync($"http://127.0.0.1:{port}/metrics")));
        await lab.PauseReplayAsync();
        try
        {
            foreach (var client in clients)
            {
                await lab.Db.NewOrderAsync(site, client);
            }

            foreach (var client in clients)
            {
                await TimeUntilAsync(web, site, client, 1);
            }
        }
        finally
        {
            await lab.ResumeReplayAsync();
        }

        var after = await Task.WhenAll(metricsPorts.Select(port => scrape.GetStringAsync($"http://127.0.0.1:{port}/metrics")));
        for (var silo = 0; silo < 2; silo++)
        {
            var onPrimary = ChangeLoads(after[silo], "primary") - ChangeLoads(before[silo], "primary");
            var onReplica = ChangeLoads(after[silo], "replica-0") - ChangeLoads(before[silo], "replica-0");
            output.WriteLine($"silo {silo}: {onPrimary} change loads on the primary, {onReplica} on the paused replica");
            Assert.True(onPrimary >= 1, $"Silo {silo} reloaded no change on the primary.");
            Assert.Equal(0, onReplica);
        }

        // Loads for a change on the target, from a silo's /metrics.
        static double ChangeLoads(string text, string target) => text.Split('\n')
            .Where(l => l.StartsWith("statscache_source_loads_total{", StringComparison.Ordinal)
                && l.Contains($"target=\"{target}\"", StringComparison.Ordinal) && l.Contains("reason=\"change\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
    }

    private async Task<StatsCacheFactory> WebAsync(params (string Key, string Value)[] settings)
    {
        var web = StatsCacheFactory.Started(
        [
            ("ConnectionStrings:Stats", lab.Primary.ConnectionString),
            ("StatsCache:Source:Replicas:0", lab.Replica.ConnectionString),
            ("StatsCache:Changes:IsEnabled", "true"),
            ("StatsCache:Cache:RetryBaseDuration", "00:00:00.100"),
            .. settings,
        ]);
        await ChangeFeedTests.WaitUntilListeningAsync(web, lab.Primary.DataSource);
        return web;
    }

    private static async Task<long> OrdersAsync(StatsCacheFactory web, long site, long client) =>
        (await GetAsync(web, site, client, "client-stats")).GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64();

    private static async Task<JsonElement> GetAsync(StatsCacheFactory web, long site, long client, string view)
    {
        using var http = web.ClientFor(site, "client", client);
        return await http.GetFromJsonAsync<JsonElement>($"/api/dashboards/{view}");
    }

    /// <summary>How long after now the client's dashboard shows <paramref name="orders"/> orders; fails past <see cref="Visible"/>.</summary>
    private static async Task<TimeSpan> TimeUntilAsync(StatsCacheFactory web, long site, long client, long orders)
    {
        var clock = Stopwatch.StartNew();
        long shown;
        while ((shown = await OrdersAsync(web, site, client)) != orders)
        {
            Assert.True(clock.Elapsed < Visible, $"Client {client} saw {shown} orders {clock.Elapsed.TotalMilliseconds:F0} ms after the write of order {orders}.");
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }

        return clock.Elapsed;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}

/// <summary>
/// A primary (with <c>pg_stat_statements</c>, to count where the dashboards' statements run) and a streaming replica of it
/// (<c>pg_basebackup -R</c>), both of the tests' own on this machine.
/// </summary>
public sealed class ReplicaLab : IAsyncLifetime
{
    // The shipped client-stats query opens with this comment, which pg_stat_statements keeps.
    private const string ClientStatsMarker = "%One scan of the client's orders%";

    public ThrowawayPostgres Primary { get; } = new(["shared_preload_libraries=pg_stat_statements"]);

    public ThrowawayPostgres Replica { get; private set; } = null!;

    public TestDatabase Db { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Primary.InitializeAsync();
        await Primary.ExecuteAsync("create extension pg_stat_statements");
        Db = new TestDatabase(Primary.ConnectionString);
        await Db.InitializeAsync();
        Replica = await Primary.StartReplicaAsync();
    }

    public async Task DisposeAsync()
    {
        await Db.DisposeAsync();
        await Replica.DisposeAsync();
        await Primary.DisposeAsync();
    }

    /// <summary>How often the shipped client-stats view's query has run on the server.</summary>
    public static async Task<long> ClientStatsCallsAsync(ThrowawayPostgres server)
    {
        await using var command = server.DataSource.CreateCommand("select coalesce(sum(calls), 0)::bigint from pg_stat_statements where query like @marker");
        command.Parameters.AddWithValue("marker", ClientStatsMarker);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public Task PauseReplayAsync() => Replica.ExecuteAsync("select pg_wal_replay_pause()");

    public Task ResumeReplayAsync() => Replica.ExecuteAsync("select pg_wal_replay_resume()");

    /// <summary>Waits until the replica streams from the primary and has replayed everything the primary has written.</summary>
    public async Task WaitUntilReplayedAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                await using var command = Primary.DataSource.CreateCommand(
                    "select count(*) from pg_stat_replication where state = 'streaming' and replay_lsn >= pg_current_wal_insert_lsn()");
                if ((long)(await command.ExecuteScalarAsync())! > 0)
                {
                    return;
                }
            }
            catch (Npgsql.NpgsqlException) when (DateTime.UtcNow < deadline)
            {
                // the primary is still starting
            }

            Assert.True(DateTime.UtcNow < deadline, "The replica did not catch up with the primary in 30 s.");
            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }
    }
}
