using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using StatsCache.Catalog;

namespace StatsCache.Integration.Tests;

/// <summary>
/// <c>GET /api/dashboards/batch</c> on a co-hosted silo and real PostgreSQL: the single read's checks per view, its
/// answers in request order, one ETag over the parts, slots for views without a snapshot, and no mixing of callers.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class BatchTests(TestDatabase db, StatsCacheFactory web)
{
    [Fact]
    public async Task AnswersEachViewInRequestOrderAsItsSingleReadDoes()
    {
        var site = await db.NewWebsiteAsync();
        var admin = await db.NewUserAsync(site, "admin");
        await db.NewOrderAsync(site, await db.NewUserAsync(site, "client"), 30m);
        var http = web.ClientFor(site, "admin", admin);

        using var response = await http.GetAsync("/api/dashboards/batch?view=admin-reviews&view=admin-analytics&view=admin-overview&days=7");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var batch = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal((site, "admin", admin), (batch.GetProperty("site").GetInt64(), batch.GetProperty("role").GetString(), batch.GetProperty("user").GetInt64()));
        var views = batch.GetProperty("views").EnumerateObject().ToList();
        Assert.Equal(["admin-reviews", "admin-analytics", "admin-overview"], views.Select(v => v.Name));

        // 'days' applies to the one view that declares it; the others keep their (empty) parameters.
        Assert.Equal(7, views[1].Value.GetProperty("parameters").GetProperty("days").GetInt32());
        Assert.Empty(views[0].Value.GetProperty("parameters").EnumerateObject());
        foreach (var (view, query) in new[] { ("admin-reviews", ""), ("admin-analytics", "?days=7"), ("admin-overview", "") })
        {
            var single = await http.GetFromJsonAsync<JsonElement>($"/api/dashboards/{view}{query}");
            var slot = views.Single(v => v.Name == view).Value;
            Assert.Equal(view, slot.GetProperty("view").GetString());
            foreach (var field in new[] { "parameters", "asOf", "stale", "data" })
            {
                Assert.Equal(single.GetProperty(field).GetRawText(), slot.GetProperty(field).GetRawText());
            }
        }

        Assert.Equal(1, views[2].Value.GetProperty("data").GetProperty("orders_by_status").GetProperty("total").GetInt32());
    }

    [Theory]
    [InlineData("/api/dashboards/batch", 400, "Name the views")]
    [InlineData("/api/dashboards/batch?view=client-stats&view=nope", 404, "'nope'")]
    [InlineData("/api/dashboards/batch?view=client-stats&view=admin-overview", 403, "admin-overview")]
    [InlineData("/api/dashboards/batch?view=client-stats&view=client-stats", 400, "requested twice")]
    [InlineData("/api/dashboards/batch?view=client-stats&days=7", 400, "'days' is not a parameter of any requested view (client-stats)")]
    [InlineData("/api/dashboards/batch?view=client-stats&view=client-analytics&months=0", 400, "View 'client-analytics': Parameter 'months'")]
    [InlineData("/api/dashboards/batch?view=client-analytics&months=3&months=4", 400, "'months' must be given exactly once")]
    [InlineData("/api/dashboards/batch?view=client-stats&refresh=maybe", 400, "'refresh' must be true or false")]
    [InlineData("/api/dashboards/live?view=client-stats&refresh=true", 400, "'refresh' is not a parameter")]
    [InlineData("/api/dashboards/live?view=client-stats&view=client-stats", 400, "requested twice")]
    public async Task EveryViewPassesTheSingleReadsChecks(string path, int status, string detail)
    {
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));

        using var response = await http.GetAsync(path);
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        var text = problem.GetProperty("title").GetString() + (problem.TryGetProperty("detail", out var more) ? " " + more.GetString() : "");
        Assert.Contains(detail, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MoreViewsThanTheCatalogHasAreRefused()
    {
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "admin", await db.NewUserAsync(site, "admin"));
        var query = string.Join('&', Enumerable.Range(0, 14).Select(i => $"view=v{i}"));

        using var response = await http.GetAsync($"/api/dashboards/batch?{query}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("At most 13 views", (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("title").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task OneETagOverThePartsAnswers304UntilAPartChanges()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var http = web.ClientFor(site, "client", client);
        const string path = "/api/dashboards/batch?view=client-stats&view=client-loyalty";

        using var first = await http.GetAsync(path);
        var sinceLoad = Stopwatch.StartNew();
        var tag = first.Headers.ETag!;
        Assert.True(tag.IsWeak);
        var maxAge = first.Headers.CacheControl!.MaxAge!.Value;
        var singles = new List<TimeSpan>();
        foreach (var view in new[] { "client-stats", "client-loyalty" })
        {
            using var single = await http.GetAsync($"/api/dashboards/{view}");
            singles.Add(single.Headers.CacheControl!.MaxAge!.Value);
        }

        // The smallest part's max-age (the singles were read a moment later, so they may be a second less).
        Assert.InRange(maxAge, singles.Min(), singles.Min() + TimeSpan.FromSeconds(1));
        Assert.True(first.Headers.CacheControl.Private);

        using var again = new HttpRequestMessage(HttpMethod.Get, path);
        again.Headers.IfNoneMatch.Add(tag);
        using var notModified = await http.SendAsync(again);
        Assert.True(notModified.StatusCode == HttpStatusCode.NotModified, $"{tag} then {notModified.Headers.ETag}: {await notModified.Content.ReadAsStringAsync()}");

        // Another order changes client-stats: the batch's tag changes with it.
        await db.NewOrderAsync(site, client);
        await StatsCacheFactory.WaitOutRefreshFloorAsync(sinceLoad);
        using var refresh = await http.GetAsync("/api/dashboards/client-stats?refresh=true");
        using var changed = new HttpRequestMessage(HttpMethod.Get, path);
        changed.Headers.IfNoneMatch.Add(tag);
        using var modified = await http.SendAsync(changed);
        Assert.Equal(HttpStatusCode.OK, modified.StatusCode);
        Assert.NotEqual(tag, modified.Headers.ETag);
    }

    [Fact]
    public async Task AViewWithoutASnapshotIsAProblemInItsSlotWhileTheOthersAnswer()
    {
        var ttl = TimeSpan.FromMinutes(5);
        using var catalog = new TestCatalog(
            TestCatalog.View("batch-good", ttl, "summary", "row", "select count(*)::bigint as orders from orders where website_id = @site_id and client_id = @user_id"),
            TestCatalog.View("batch-broken", ttl, "summary", "row", "select 1 / (@user_id - @user_id) as never"));
        await using var host = StatsCacheFactory.Started([("StatsCache:CatalogPath", catalog.Path)]);
        var site = await db.NewWebsiteAsync();
        var http = host.ClientFor(site, "client", await db.NewUserAsync(site, "client"));

        using var response = await http.GetAsync("/api/dashboards/batch?view=batch-broken&view=batch-good");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Null(response.Headers.ETag);
        Assert.True(response.Headers.CacheControl!.NoStore);
        var views = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("views");
        var broken = views.GetProperty("batch-broken");
        Assert.Equal(503, broken.GetProperty("status").GetInt32());
        Assert.Equal("The data source is unavailable.", broken.GetProperty("title").GetString());
        Assert.True(broken.GetProperty("retryAfter").GetInt32() >= 1);
        Assert.Equal(0, views.GetProperty("batch-good").GetProperty("data").GetProperty("summary").GetProperty("orders").GetInt64());

        // Nothing usable in any part: the whole answer is the first part's problem, as its single read would get.
        using var none = await http.GetAsync("/api/dashboards/batch?view=batch-broken");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, none.StatusCode);
        Assert.Equal("application/problem+json", none.Content.Headers.ContentType?.MediaType);
        Assert.NotNull(none.Headers.RetryAfter);
    }

    [Fact]
    public async Task CallersReadingAtOnceGetOnlyTheirOwnNumbers()
    {
        var site = await db.NewWebsiteAsync();
        var clients = new List<(long Id, int Orders)>();
        for (var i = 0; i < 8; i++)
        {
            var id = await db.NewUserAsync(site, "client");
            for (var o = 0; o < i; o++)
            {
                await db.NewOrderAsync(site, id);
            }

            clients.Add((id, i));
        }

        await Task.WhenAll(clients.Select(async c =>
        {
            var http = web.ClientFor(site, "client", c.Id);
            for (var round = 0; round < 5; round++)
            {
                var batch = await http.GetFromJsonAsync<JsonElement>("/api/dashboards/batch?view=client-stats&view=client-loyalty");
                Assert.Equal(c.Id, batch.GetProperty("user").GetInt64());
                Assert.Equal(c.Orders, batch.GetProperty("views").GetProperty("client-stats").GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt32());
            }
        }));
    }

    [Theory]
    [InlineData("batch", "refresh-days")]
    [InlineData("live", "refresh-days")]
    [InlineData("ok-view", "view")]
    [InlineData("ok-view", "refresh")]
    public void AViewCannotTakeTheNamesTheApiReadsItself(string view, string parameter)
    {
        var file = JsonSerializer.Serialize(new
        {
            views = new[]
            {
                new
                {
                    name = view,
                    roles = new[] { "client" },
                    scope = "user",
                    ttl = "00:05:00",
                    parameters = new[] { new { name = parameter.Replace('-', '_'), type = "int", @default = 1, min = 1, max = 9 } },
                    queries = new[] { new { name = "summary", shape = "row", sql = "select 1 as one" } },
                },
            },
        });
        using var catalog = new TestCatalog();
        File.WriteAllText(catalog.Path, file);

        var error = Assert.Throws<CatalogException>(() => DashboardCatalog.Load(catalog.Path));
        Assert.Contains("reserved", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NeedsAToken()
    {
        using var response = await web.CreateClient().GetAsync("/api/dashboards/batch?view=client-stats");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(new MediaTypeHeaderValue("application/problem+json").MediaType, response.Content.Headers.ContentType?.MediaType);
    }
}
