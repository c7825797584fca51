using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using StatsCache.WebHost.Auth;

namespace StatsCache.Integration.Tests;

/// <summary>The HTTP contract of DESIGN.md, through the real web host, in-process silo and PostgreSQL.</summary>
[Collection(DatabaseCollection.Name)]
public sealed class DashboardHttpTests(TestDatabase db, StatsCacheFactory factory)
{
    [Fact]
    public async Task RequestWithoutTokenGets401Problem()
    {
        var response = await factory.CreateClient().GetAsync("/api/dashboards/client-stats");
        await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "A bearer token is required.");
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
    }

    [Fact]
    public async Task TokenSignedWithAnotherKeyGets401()
    {
        var other = new AuthOptions { SigningKey = new string('k', 48), Issuer = factory.Auth.Issuer, Audience = factory.Auth.Audience };
        var client = factory.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Bearer", TokenIssuer.Issue(other, new Caller(1, "client", 1), TimeSpan.FromMinutes(5)));

        var response = await client.GetAsync("/api/dashboards/client-stats");
        await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "The bearer token's signature is invalid.");
    }

    [Fact]
    public async Task ExpiredTokenGets401()
    {
        var client = factory.ClientFor(1, "client", 1, TimeSpan.FromMinutes(5), DateTimeOffset.UtcNow.AddHours(-1));
        var response = await client.GetAsync("/api/dashboards/client-stats");
        await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "The bearer token has expired.");
    }

    [Fact]
    public async Task MalformedTokenGets401()
    {
        var client = factory.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "not.a.token");
        var response = await client.GetAsync("/api/dashboards/client-stats");
        await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "The bearer token is invalid.");
    }

    [Fact]
    public async Task ViewOfAnotherRoleGets403()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var response = await factory.ClientFor(site, "writer", writer).GetAsync("/api/dashboards/client-stats");
        await AssertProblemAsync(response, HttpStatusCode.Forbidden, "This view is not available to your role.");
    }

    [Fact]
    public async Task RoleWithoutViewsGets403()
    {
        var response = await factory.ClientFor(1, "auditor", 1).GetAsync("/api/dashboards");
        await AssertProblemAsync(response, HttpStatusCode.Forbidden, "Your role has no dashboards.");
    }

    [Fact]
    public async Task UnknownViewGets404()
    {
        var response = await factory.ClientFor(1, "client", 1).GetAsync("/api/dashboards/no-such-view");
        await AssertProblemAsync(response, HttpStatusCode.NotFound, "Unknown view.");
    }

    [Theory]
    [InlineData("weeks=0", "'weeks'")]
    [InlineData("weeks=53", "'weeks'")]
    [InlineData("weeks=ten", "'weeks'")]
    [InlineData("weeks=1&weeks=2", "'weeks'")]
    [InlineData("months=3", "'months'")]
    [InlineData("refresh=maybe", "'refresh'")]
    public async Task BadOrUnknownParameterGets400NamingIt(string query, string named)
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var response = await factory.ClientFor(site, "writer", writer).GetAsync($"/api/dashboards/writer-earnings?{query}");
        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Contains(named, problem.GetProperty("title").GetString());
    }

    [Fact]
    public async Task ListShowsOnlyTheViewsOfTheCallersRole()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var list = await factory.ClientFor(site, "writer", writer).GetFromJsonAsync<JsonElement>("/api/dashboards");

        Assert.Equal(site, list.GetProperty("site").GetInt64());
        Assert.Equal("writer", list.GetProperty("role").GetString());
        var views = list.GetProperty("views").EnumerateArray().ToList();
        Assert.Contains(views, v => v.GetProperty("name").GetString() == "writer-earnings");
        Assert.DoesNotContain(views, v => v.GetProperty("name").GetString() is "client-stats" or "admin-overview");
        var weeks = views.Single(v => v.GetProperty("name").GetString() == "writer-earnings").GetProperty("parameters")[0];
        Assert.Equal(("weeks", 12, 1, 52), (weeks.GetProperty("name").GetString(), weeks.GetProperty("default").GetInt32(),
            weeks.GetProperty("min").GetInt32(), weeks.GetProperty("max").GetInt32()));
    }

    [Fact]
    public async Task SnapshotCarriesEnvelopeETagAndCacheControl()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var client = factory.ClientFor(site, "writer", writer);

        var response = await client.GetAsync("/api/dashboards/writer-earnings?weeks=4");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.True(response.Headers.ETag!.IsWeak);
        Assert.True(response.Headers.CacheControl!.Private);
        // Until the entry's next refresh: the first one comes at a random point of the 5-minute TTL's last 90%.
        Assert.InRange(response.Headers.CacheControl.MaxAge!.Value, TimeSpan.FromSeconds(29), TimeSpan.FromMinutes(5));

        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("writer-earnings", body.GetProperty("view").GetString());
        Assert.Equal(site, body.GetProperty("site").GetInt64());
        Assert.Equal("writer", body.GetProperty("role").GetString());
        Assert.Equal(writer, body.GetProperty("user").GetInt64());
        Assert.Equal(4, body.GetProperty("parameters").GetProperty("weeks").GetInt32());
        Assert.False(body.GetProperty("stale").GetBoolean());
        Assert.True(DateTimeOffset.UtcNow - body.GetProperty("asOf").GetDateTimeOffset() < TimeSpan.FromMinutes(1));
        Assert.Equal(4, body.GetProperty("data").GetProperty("weekly").GetArrayLength());
    }

    [Fact]
    public async Task MatchingETagGets304()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var http = factory.ClientFor(site, "client", client);

        var first = await http.GetAsync("/api/dashboards/client-stats");
        var etag = first.Headers.ETag!;

        using var conditional = new HttpRequestMessage(HttpMethod.Get, "/api/dashboards/client-stats");
        conditional.Headers.IfNoneMatch.Add(etag);
        var second = await http.SendAsync(conditional);
        Assert.Equal(HttpStatusCode.NotModified, second.StatusCode);
        Assert.Equal(etag, second.Headers.ETag);
        Assert.Empty(await second.Content.ReadAsByteArrayAsync());

        using var other = new HttpRequestMessage(HttpMethod.Get, "/api/dashboards/client-stats");
        other.Headers.IfNoneMatch.Add(new EntityTagHeaderValue("\"something-else\"", isWeak: true));
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(other)).StatusCode);
    }

    [Fact]
    public async Task ClientNeverSeesAnotherClientsNumbers()
    {
        var site = await db.NewWebsiteAsync();
        var alice = await db.NewUserAsync(site, "client");
        var bob = await db.NewUserAsync(site, "client");
        for (var i = 0; i < 3; i++)
        {
            await db.NewOrderAsync(site, alice, 10m);
        }

        await db.NewOrderAsync(site, bob, 99m);

        // Bob asks first, so a cache keyed carelessly would hand his entry to Alice.
        var bobs = await factory.ClientFor(site, "client", bob).GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats");
        var alices = await factory.ClientFor(site, "client", alice).GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats");

        Assert.Equal(bob, bobs.GetProperty("user").GetInt64());
        Assert.Equal(1, bobs.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());
        Assert.Equal(99m, bobs.GetProperty("data").GetProperty("summary").GetProperty("total_spent").GetDecimal());
        Assert.Equal(alice, alices.GetProperty("user").GetInt64());
        Assert.Equal(3, alices.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());
        Assert.Equal(30m, alices.GetProperty("data").GetProperty("summary").GetProperty("total_spent").GetDecimal());
    }

    [Fact]
    public async Task RefreshReloadsWhatTheDatabaseNowSays()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var http = factory.ClientFor(site, "client", client);
        var before = await http.GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats");
        var sinceLoad = Stopwatch.StartNew();
        Assert.Equal(0, before.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());

        await db.NewOrderAsync(site, client, 5m);
        var cached = await http.GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats");
        Assert.Equal(0, cached.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());

        await StatsCacheFactory.WaitOutRefreshFloorAsync(sinceLoad);
        var refreshed = await http.GetFromJsonAsync<JsonElement>("/api/dashboards/client-stats?refresh=true");
        Assert.Equal(1, refreshed.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt64());
    }

    [Fact]
    public async Task HealthAndReadinessAnswer()
    {
        var http = factory.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
    }

    [Fact]
    public async Task OpenApiDocumentDescribesTheDashboardEndpoints()
    {
        var document = await factory.CreateClient().GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var paths = document.GetProperty("paths");
        Assert.True(paths.TryGetProperty("/api/dashboards/{view}", out _));
        Assert.True(paths.TryGetProperty("/api/dashboards", out _) || paths.TryGetProperty("/api/dashboards/", out _));
    }

    [Fact]
    public async Task UnknownPathGetsProblem404()
    {
        var response = await factory.CreateClient().GetAsync("/nothing/here");
        await AssertProblemAsync(response, HttpStatusCode.NotFound);
    }

    private static async Task<JsonElement> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string? title = null)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        if (title is not null)
        {
            Assert.Equal(title, problem.GetProperty("title").GetString());
        }

        return problem;
    }
}
