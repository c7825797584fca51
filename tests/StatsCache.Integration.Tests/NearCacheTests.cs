using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The web host's near-cache on a co-hosted silo and real PostgreSQL: hits make no grain call and give the grain's
/// own answer, pushes keep them current, watches, the silos' heartbeats, the cap and the switch hold, and keys never mix callers.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class NearCacheTests(TestDatabase db, ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task HitMakesNoGrainCallAndGivesTheGrainsOwnAnswer()
    {
        await using var web = StatsCacheFactory.Started([]);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        await db.NewOrderAsync(site, client, 12m);
        var http = web.ClientFor(site, "client", client);

        var fromGrain = await http.GetAsync("/api/dashboards/client-stats");
        var body = await fromGrain.Content.ReadAsStringAsync();
        var grainReads = metrics.Total("statscache.reads");
        for (var i = 0; i < 20; i++)
        {
            var fromMemory = await http.GetAsync("/api/dashboards/client-stats");
            Assert.Equal(HttpStatusCode.OK, fromMemory.StatusCode);
            Assert.Equal(body, await fromMemory.Content.ReadAsStringAsync());
            Assert.Equal(fromGrain.Headers.ETag, fromMemory.Headers.ETag);
            Assert.InRange(fromMemory.Headers.CacheControl!.MaxAge!.Value, TimeSpan.Zero, fromGrain.Headers.CacheControl!.MaxAge!.Value);
        }

        Assert.Equal(grainReads, metrics.Total("statscache.reads"));
        Assert.Equal(20, metrics.Total("statscache.nearcache.hits"));

        // refresh=true always asks the grain (here within the floor, so it answers the same snapshot).
        Assert.Equal(body, await (await http.GetAsync("/api/dashboards/client-stats?refresh=true")).Content.ReadAsStringAsync());
        Assert.Equal(grainReads + 1, metrics.Total("statscache.reads"));
    }

    [Fact]
    public async Task SwitchedOffEveryReadCallsTheGrain()
    {
        await using var web = StatsCacheFactory.Started([("StatsCache:NearCache:IsEnabled", "false")]);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/dashboards/client-stats")).StatusCode);
        }

        Assert.Equal(20, metrics.Total("statscache.reads"));
        Assert.Equal(0, metrics.Total("statscache.nearcache.hits"));
    }

    [Fact]
    public async Task AReadInTheWatchsSecondHalfRenewsIt()
    {
        await using var web = StatsCacheFactory.Started([("StatsCache:NearCache:WatchDuration", "00:00:02")]);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));

        // Reads for 3.5 s: one grain call to start, then one each time the 2 s watch is half gone.
        var reads = await ReadClientStatsAsync(http, TimeSpan.FromSeconds(3.5), every: TimeSpan.FromMilliseconds(20));

        var grainReads = metrics.Total("statscache.reads");
        output.WriteLine($"{reads} reads, {grainReads} of them by the grain");
        Assert.InRange(grainReads, 3, 5);
        Assert.Equal(reads - grainReads, metrics.Total("statscache.nearcache.hits"));
    }

    [Fact]
    public async Task TheSilosHeartbeatsKeepAnsweringFromMemoryPastTheLease()
    {
        // A lease far shorter than the watch: only the silo's heartbeats (one a second) keep the entry answered from memory.
        await using var web = StatsCacheFactory.Started([("StatsCache:NearCache:LeaseDuration", "00:00:03")]);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));

        var reads = await ReadClientStatsAsync(http, TimeSpan.FromSeconds(5), every: TimeSpan.FromMilliseconds(50));

        output.WriteLine($"{reads} reads in 5 s, {metrics.Total("statscache.reads")} of them by the grain, {metrics.Total("statscache.nearcache.heartbeats")} heartbeats");
        Assert.Equal(1, metrics.Total("statscache.reads"));
        Assert.InRange(metrics.Total("statscache.nearcache.heartbeats"), 3, 6);
    }

    [Fact]
    public async Task OverTheCapTheLeastRecentlyReadEntriesGoFirst()
    {
        const int Cap = 100;
        await using var web = StatsCacheFactory.Started([("StatsCache:NearCache:MaxEntries", $"{Cap}")]);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var clients = new List<HttpClient>();
        for (var i = 0; i < Cap + 1; i++)
        {
            clients.Add(web.ClientFor(site, "client", await db.NewUserAsync(site, "client")));
        }

        foreach (var http in clients.Take(Cap))
        {
            await http.GetAsync("/api/dashboards/client-stats");
        }

        foreach (var http in clients.Skip(10).Take(Cap - 10))
        {
            await http.GetAsync("/api/dashboards/client-stats"); // hits: now read more recently than the first ten
        }

        await clients[Cap].GetAsync("/api/dashboards/client-stats"); // one over the cap: a tenth goes
        var grainReads = metrics.Total("statscache.reads");
        await clients[Cap - 1].GetAsync("/api/dashboards/client-stats");
        Assert.Equal(grainReads, metrics.Total("statscache.reads"));
        await clients[0].GetAsync("/api/dashboards/client-stats");
        Assert.Equal(grainReads + 1, metrics.Total("statscache.reads"));
    }

    [Fact]
    public async Task ConcurrentReadersOfManyUsersEachGetOnlyTheirOwnNumbers()
    {
        await using var web = StatsCacheFactory.Started([]);
        using var metrics = new MetricsRecorder(web.Services);
        var sites = new[] { await db.NewWebsiteAsync(), await db.NewWebsiteAsync() };
        var callers = new List<(HttpClient Http, long Site, long User, string View, long Orders)>();
        for (var i = 0; i < 20; i++)
        {
            var site = sites[i % 2];
            var client = await db.NewUserAsync(site, "client");
            for (var n = 0; n <= i; n++)
            {
                await db.NewOrderAsync(site, client);
            }

            callers.Add((web.ClientFor(site, "client", client), site, client, "client-stats", i + 1));
        }

        foreach (var site in sites)
        {
            var orders = callers.Where(c => c.Site == site).Sum(c => c.Orders);
            for (var i = 0; i < 2; i++)
            {
                var admin = await db.NewUserAsync(site, "admin");
                callers.Add((web.ClientFor(site, "admin", admin), site, admin, "admin-overview", orders));
            }
        }

        var random = new Random(7);
        var picks = Enumerable.Range(0, 2000).Select(_ => callers[random.Next(callers.Count)]).ToList();
        await Parallel.ForEachAsync(picks, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (caller, ct) =>
        {
            var body = await caller.Http.GetFromJsonAsync<JsonElement>($"/api/dashboards/{caller.View}", ct);
            Assert.Equal(caller.User, body.GetProperty("user").GetInt64());
            Assert.Equal(caller.Site, body.GetProperty("site").GetInt64());
            var orders = caller.View == "client-stats"
                ? body.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64()
                : body.GetProperty("data").GetProperty("orders_by_status").GetProperty("total").GetInt64();
            Assert.Equal(caller.Orders, orders);
        });

        var hits = metrics.Total("statscache.nearcache.hits");
        output.WriteLine($"2,000 reads of {callers.Count} callers: {hits} near-cache hits, {metrics.Total("statscache.reads")} grain reads");
        Assert.True(hits > 1500, $"Only {hits} of 2,000 reads were near-cache hits.");
    }

    [Fact]
    public async Task OnePushOfASiteEntryUpdatesEveryAdminsReadsOnTheWebHost()
    {
        await using var web = StatsCacheFactory.Started([("StatsCache:Changes:IsEnabled", "true")]);
        await ChangeFeedTests.WaitUntilListeningAsync(web, db.DataSource); // before any read: a new slot refreshes what is held
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var admins = new List<HttpClient>();
        for (var i = 0; i < 5; i++)
        {
            admins.Add(web.ClientFor(site, "admin", await db.NewUserAsync(site, "admin")));
        }

        foreach (var admin in admins)
        {
            Assert.Equal(0, await SiteOrdersAsync(admin));
        }

        Assert.Equal(1, metrics.Total("statscache.loads", "admin-overview", "success"));
        Assert.Equal(admins.Count - 1, metrics.Total("statscache.nearcache.hits")); // one site entry for all of them

        var written = Stopwatch.StartNew();
        await db.NewOrderAsync(site, client);
        await WaitUntilAsync(async () => await SiteOrdersAsync(admins[0]) == 1, "the first admin sees the order");
        var visible = written.Elapsed;

        // The reloaded entry, pushed to this web host, answers every admin from memory.
        var hits = metrics.Total("statscache.nearcache.hits");
        foreach (var admin in admins.Skip(1))
        {
            Assert.Equal(1, await SiteOrdersAsync(admin));
        }

        output.WriteLine($"write to visible {visible.TotalMilliseconds:F0} ms; {metrics.Total("statscache.nearcache.pushes")} pushes");
        Assert.True(visible < TimeSpan.FromSeconds(1), $"The order showed after {visible.TotalMilliseconds:F0} ms.");
        Assert.Equal(2, metrics.Total("statscache.loads", "admin-overview", "success"));
        Assert.True(metrics.Total("statscache.nearcache.pushes") >= 1);
        Assert.Equal(hits + admins.Count - 1, metrics.Total("statscache.nearcache.hits"));
    }

    private static async Task<long> SiteOrdersAsync(HttpClient admin) =>
        (await admin.GetFromJsonAsync<JsonElement>("/api/dashboards/admin-overview"))
            .GetProperty("data").GetProperty("orders_by_status").GetProperty("total").GetInt64();

    /// <summary>Reads the caller's client-stats every <paramref name="every"/> for <paramref name="duration"/>; returns the reads.</summary>
    private static async Task<int> ReadClientStatsAsync(HttpClient http, TimeSpan duration, TimeSpan every)
    {
        var clock = Stopwatch.StartNew();
        var reads = 0;
        while (clock.Elapsed < duration)
        {
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/dashboards/client-stats")).StatusCode);
            reads++;
            await Task.Delay(every);
        }

        return reads;
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
}
