using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace StatsCache.Integration.Tests;

/// <summary>
/// One caller cannot turn the cache off: the floor of forced refreshes, the budget of new parameter
/// combinations and the request rate, each through the real web host, silo and PostgreSQL.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class LimitsTests(TestDatabase db)
{
    private const int NewEntryBurst = 3;
    private const int RequestBurst = 5;

    [Fact]
    public async Task RefreshWithinTheFloorAnswersTheCurrentSnapshotWithoutALoad()
    {
        await using var web = StatsCacheFactory.Started([("StatsCache:Cache:MinRefreshInterval", "00:01:00")]);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var http = web.ClientFor(site, "client", client);
        var first = await http.GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats");
        await db.NewOrderAsync(site, client);

        for (var i = 0; i < 20; i++)
        {
            var response = await http.GetAsync("/api/dashboards/client-stats?refresh=true");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var body = await response.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Equal(first.GetProperty("asOf").GetString(), body.GetProperty("asOf").GetString());
            Assert.Equal(0, body.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());
        }

        Assert.Equal(1, metrics.Total("statscache.loads", "client-stats", "success"));
        Assert.Equal(20, metrics.Total("statscache.refreshes", "client-stats", "floor"));
    }

    [Fact]
    public async Task CallerCyclingAParameterGets429WhileOthersAndItsCachedEntriesGet200()
    {
        await using var web = StatsCacheFactory.Started(SmallNewEntryBudget);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var abuser = web.ClientFor(site, "admin", await db.NewUserAsync(site, "admin"));
        var other = web.ClientFor(site, "admin", await db.NewUserAsync(site, "admin"));

        for (var days = 1; days <= NewEntryBurst; days++)
        {
            Assert.Equal(HttpStatusCode.OK, (await abuser.GetAsync($"/api/dashboards/admin-analytics?days={days}")).StatusCode);
        }

        var refused = await abuser.GetAsync("/api/dashboards/admin-analytics?days=100");
        await BadInputTests.AssertProblemAsync(refused, HttpStatusCode.TooManyRequests, "You are asking too fast.");
        var retryAfter = refused.Headers.RetryAfter?.Delta;
        Assert.NotNull(retryAfter);
        Assert.InRange(retryAfter.Value, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(100));
        Assert.Equal(1, metrics.Total("statscache.refusals", outcome: "new-entries"));

        // Another admin of the site reads the same view, with the parameters the abuser was refused; then those
        // are cached, and the abuser's read of them is a read of a cached entry. Its earlier entries still answer.
        Assert.Equal(HttpStatusCode.OK, (await other.GetAsync("/api/dashboards/admin-analytics")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await other.GetAsync("/api/dashboards/admin-analytics?days=100")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await abuser.GetAsync("/api/dashboards/admin-analytics?days=100")).StatusCode);
        for (var days = 1; days <= NewEntryBurst; days++)
        {
            Assert.Equal(HttpStatusCode.OK, (await abuser.GetAsync($"/api/dashboards/admin-analytics?days={days}")).StatusCode);
        }

        Assert.Equal(HttpStatusCode.TooManyRequests, (await abuser.GetAsync("/api/dashboards/admin-analytics?days=200")).StatusCode);
        Assert.Equal(NewEntryBurst + 2, metrics.Total("statscache.loads", "admin-analytics", "success"));
    }

    [Fact]
    public async Task RequestLimitIsPerCallerAnsweredWithProblemDetailsAndNeverTouchesOperationalEndpoints()
    {
        await using var web = StatsCacheFactory.Started([.. SmallRequestLimit, ("StatsCache:RequestLimit:RejectionDelay", "00:00:00.300")]);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var first = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));
        var second = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));

        // The burst is answered; the limit refills one request a second, so among as many again one is refused.
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? refused = null;
        var refusedAfter = TimeSpan.Zero;
        for (var i = 0; i < 2 * RequestBurst && refused is null; i++)
        {
            var asked = System.Diagnostics.Stopwatch.StartNew();
            var response = await first.GetAsync("/api/dashboards/client-stats");
            refusedAfter = asked.Elapsed;
            statuses.Add(response.StatusCode);
            refused = response.StatusCode == HttpStatusCode.TooManyRequests ? response : null;
        }

        Assert.All(statuses.Take(RequestBurst), status => Assert.Equal(HttpStatusCode.OK, status));
        Assert.NotNull(refused);
        var problem = await BadInputTests.AssertProblemAsync(refused, HttpStatusCode.TooManyRequests, "You are asking too fast.");
        Assert.Contains("1 requests a second", problem.Detail, StringComparison.Ordinal);
        Assert.InRange(refused.Headers.RetryAfter?.Delta ?? TimeSpan.Zero, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2));
        Assert.Equal(1, metrics.Total("statscache.refusals", outcome: "request-rate"));

        // The refusal was held for the rejection delay: a flood on one connection gets at most one answer per delay.
        Assert.True(refusedAfter >= TimeSpan.FromMilliseconds(290), $"The 429 came after {refusedAfter.TotalMilliseconds:F0} ms.");

        // Another caller (same site and role) has a limit of its own; the operational endpoints have none.
        Assert.Equal(HttpStatusCode.OK, (await second.GetAsync("/api/dashboards/client-stats")).StatusCode);
        foreach (var path in new[] { "/healthz", "/readyz", "/metrics", "/openapi/v1.json" })
        {
            for (var i = 0; i < 2 * RequestBurst; i++)
            {
                Assert.Equal(HttpStatusCode.OK, (await first.GetAsync(path)).StatusCode);
            }
        }
    }

    [Fact]
    public async Task RequestLimitCanBeSwitchedOff()
    {
        await using var web = StatsCacheFactory.Started([.. SmallRequestLimit, ("StatsCache:RequestLimit:IsEnabled", "false")]);
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));
        for (var i = 0; i < 4 * RequestBurst; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/dashboards/client-stats")).StatusCode);
        }
    }

    // Small limits, so that a test reaches them in a few requests: a burst of 5 requests then 1 a second, and a
    // budget of 3 new entries that fills at one per 100 s (no token comes back during a test).
    private static readonly (string, string)[] SmallRequestLimit =
        [("StatsCache:RequestLimit:RequestsPerSecond", "1"), ("StatsCache:RequestLimit:Burst", $"{RequestBurst}")];

    private static readonly (string, string)[] SmallNewEntryBudget =
        [("StatsCache:Cache:NewEntryBurst", $"{NewEntryBurst}"), ("StatsCache:Cache:NewEntriesPerSecond", "0.01")];

}
