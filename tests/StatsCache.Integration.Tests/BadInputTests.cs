using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace StatsCache.Integration.Tests;

/// <summary>
/// Malformed, oversized, repeated and unknown parameters, tricks in view names, and bad tokens: each gets the
/// right 4xx problem answer, none reaches a grain (so none reaches SQL, where only bound integers go), the
/// database is intact and the service healthy afterwards. <see cref="FuzzTests"/> mixes them at volume.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class BadInputTests(TestDatabase db, StatsCacheFactory factory)
{
    /// <summary>Query strings for <c>writer-earnings</c> (weeks 1–52) and what the 400's title must name.</summary>
    public static TheoryData<string, string> BadQueries => new()
    {
        { "weeks=", "'weeks'" },
        { "weeks", "'weeks'" },
        { "weeks=0", "'weeks'" },
        { "weeks=53", "'weeks'" },
        { "weeks=-1", "'weeks'" },
        { "weeks=2147483648", "'weeks'" },
        { "weeks=99999999999999999999999999", "'weeks'" },
        { "weeks=ten", "'weeks'" },
        { "weeks=1e1", "'weeks'" },
        { "weeks=0x0c", "'weeks'" },
        { "weeks=12.0", "'weeks'" },
        { "weeks=12%20", "'weeks'" },
        { "weeks=+12", "'weeks'" }, // '+' is a space in a query string
        { "weeks=%D9%A1%D9%A2", "'weeks'" }, // Arabic-Indic digits
        { "weeks=%EF%BC%91%EF%BC%92", "'weeks'" }, // full-width digits
        { "weeks=12%00", "'weeks'" },
        { "weeks=12;drop%20table%20orders", "'weeks'" },
        { "weeks=12%27%20or%20%271%27=%271", "'weeks'" },
        { "weeks=12)%3Bdrop%20table%20orders%3B--", "'weeks'" },
        { "weeks=" + new string('9', 10_000), "'weeks'" },
        { "weeks=1&weeks=2", "'weeks'" },
        { "weeks=1&WEEKS=2", "'weeks'" },
        { "months=3", "'months'" },
        { "WEEKS=12", "'WEEKS'" },
        { "weeks%00=1", "'weeks\0'" },
        { "site_id=2", "'site_id'" },
        { "user_id=1", "'user_id'" },
        { "role=admin", "'role'" },
        { "%E2%80%AEweeks=1", "'\u202eweeks'" },
        { "we%E2%80%8Beks=1", "'we\u200beks'" },
        { new string('p', 10_000) + "=1", "'pppppppp" },
        { string.Join("&", Enumerable.Range(0, 1_000).Select(i => $"p{i}=1")), "'p0'" },
        { "refresh=maybe", "'refresh'" },
        { "refresh=1", "'refresh'" },
        { "refresh=", "'refresh'" },
        { "refresh=true&refresh=false", "'refresh'" },
        { "refresh=true%00", "'refresh'" },
        { "refresh=%20true", "'refresh'" },
    };

    /// <summary>Paths whose view name is no view: traversal, SQL, NUL, Unicode look-alikes and controls, very long.</summary>
    public static TheoryData<string, string?> BadViewPaths => new()
    {
        { "/api/dashboards/..%2F..%2Fetc", "Unknown view." },
        { "/api/dashboards/..%2F..%2Fetc%2Fpasswd", "Unknown view." },
        { "/api/dashboards/%2E%2E%2F%2E%2E%2Fetc", "Unknown view." },
        { "/api/dashboards/client-stats%2F..%2Fadmin-overview", "Unknown view." },
        { "/api/dashboards/..%5C..%5Cetc", "Unknown view." },
        { "/api/dashboards/../../etc/passwd", null }, // normalised to /etc/passwd: no such route
        { "/api/dashboards/client-stats/../../../etc", null },
        { "/api/dashboards/client-stats;drop table orders", "Unknown view." },
        { "/api/dashboards/client-stats%3Bdrop%20table%20orders", "Unknown view." },
        { "/api/dashboards/client-stats'%20or%20'1'='1", "Unknown view." },
        { "/api/dashboards/client%E2%80%AEstats", "Unknown view." }, // right-to-left override
        { "/api/dashboards/client-stats%E2%80%8B", "Unknown view." }, // zero-width space
        { "/api/dashboards/%EF%BD%83lient-stats", "Unknown view." }, // full-width c
        { "/api/dashboards/%D1%81lient-stats", "Unknown view." }, // Cyrillic es
        { "/api/dashboards/CLIENT-STATS", "Unknown view." },
        { "/api/dashboards/client-stats%20", "Unknown view." },
        { "/api/dashboards/client_stats", "Unknown view." },
        { "/api/dashboards/admin-overview%23", "Unknown view." },
        { "/api/dashboards/%FF%FE", null },
        { "/api/dashboards/" + new string('a', 5_000), "Unknown view." },
        { "/api/dashboards/client-stats/extra", null },
    };

    public static TheoryData<string> TokenCases => [.. BadTokens.All(new() { SigningKey = new string('x', 32) }, 1, 1).Select(c => c.Name)];

    [Theory]
    [MemberData(nameof(BadQueries))]
    public async Task BadQueryParameterGets400NamingIt(string query, string named)
    {
        using var metrics = new MetricsRecorder(factory.Services);
        var http = factory.ClientFor(1, "writer", 2);
        var problem = await AssertProblemAsync(await http.GetAsync($"/api/dashboards/writer-earnings?{query}"), HttpStatusCode.BadRequest);
        Assert.Contains(named, problem.Title, StringComparison.OrdinalIgnoreCase); // query names are case-insensitive in ASP.NET Core
        Assert.True(problem.Title!.Length < 200, "The title echoes too much of the request.");
        Assert.Equal(0, metrics.Total("statscache.reads"));
    }

    [Theory]
    [MemberData(nameof(BadViewPaths))]
    public async Task ViewNameThatIsNoViewGets404(string path, string? title)
    {
        using var metrics = new MetricsRecorder(factory.Services);
        var problem = await AssertProblemAsync(await factory.ClientFor(1, "client", 3).GetAsync(path), HttpStatusCode.NotFound, title);
        Assert.True(problem.Title!.Length + (problem.Detail?.Length ?? 0) < 300, "The problem echoes too much of the request.");
        Assert.Equal(0, metrics.Total("statscache.reads"));
    }

    [Theory]
    [MemberData(nameof(TokenCases))]
    public async Task BadTokenGetsTheRightProblem(string name)
    {
        using var metrics = new MetricsRecorder(factory.Services);
        var bad = BadTokens.All(factory.Auth, 1, 4).Single(c => c.Name == name);
        foreach (var path in new[] { "/api/dashboards", "/api/dashboards/client-stats" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            if (bad.Authorization is not null)
            {
                Assert.True(request.Headers.TryAddWithoutValidation("Authorization", bad.Authorization));
            }

            await AssertProblemAsync(await factory.CreateClient().SendAsync(request), bad.Status, bad.Title);
        }

        Assert.Equal(0, metrics.Total("statscache.reads"));
    }

    [Fact]
    public async Task AfterEveryBadInputTheDatabaseIsIntactAndTheServiceHealthy()
    {
        await db.ExecuteAsync("create table if not exists bad_input_canary (id int); truncate bad_input_canary; insert into bad_input_canary values (42)");
        var orders = await CountOrdersAsync();
        using var metrics = new MetricsRecorder(factory.Services);

        var writer = factory.ClientFor(1, "writer", 5);
        var client = factory.ClientFor(1, "client", 5);
        var statuses = new List<HttpStatusCode>();
        foreach (var row in BadQueries)
        {
            statuses.Add((await writer.GetAsync($"/api/dashboards/writer-earnings?{row[0]}")).StatusCode);
        }

        foreach (var row in BadViewPaths)
        {
            statuses.Add((await client.GetAsync((string)row[0])).StatusCode);
        }

        foreach (var bad in BadTokens.All(factory.Auth, 1, 5))
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/dashboards/client-stats");
            request.Headers.TryAddWithoutValidation("Authorization", bad.Authorization);
            statuses.Add((await factory.CreateClient().SendAsync(request)).StatusCode);
        }

        Assert.All(statuses, s => Assert.InRange((int)s, 400, 499));
        Assert.Equal(0, metrics.Total("statscache.reads")); // not one reached a grain, so none reached SQL
        Assert.Equal(orders, await CountOrdersAsync());
        await using (var command = db.DataSource.CreateCommand("select (select id from bad_input_canary), to_regclass('orders') is not null, to_regclass('users') is not null"))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            Assert.True(await reader.ReadAsync());
            Assert.Equal((42, true, true), (reader.GetInt32(0), reader.GetBoolean(1), reader.GetBoolean(2)));
        }

        Assert.Equal(HttpStatusCode.OK, (await factory.CreateClient().GetAsync("/healthz")).StatusCode);
        var site = await db.NewWebsiteAsync();
        var user = await db.NewUserAsync(site, "client");
        Assert.Equal(HttpStatusCode.OK, (await factory.ClientFor(site, "client", user).GetAsync("/api/dashboards/client-stats")).StatusCode);
    }

    /// <summary>
    /// What Kestrel refuses before the application sees it (so without a problem body): NUL in the path, a request
    /// line or headers over its limits. The in-process test server cannot send these; a Kestrel host can.
    /// </summary>
    [Fact]
    public async Task KestrelRefusesNulAndOversizedRequestsAndTheServiceStaysHealthy()
    {
        await using var web = new StatsCacheFactory();
        web.UseKestrel(0);
        web.StartServer();
        var http = web.CreateClient();
        var address = http.BaseAddress!;

        async Task<int> RawStatusAsync(string requestHead)
        {
            using var tcp = new System.Net.Sockets.TcpClient();
            await tcp.ConnectAsync(address.Host, address.Port);
            await using var stream = tcp.GetStream();
            await stream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(requestHead + $"Host: {address.Authority}\r\nConnection: close\r\n\r\n"));
            using var reader = new StreamReader(stream);
            var statusLine = await reader.ReadLineAsync() ?? "";
            return int.Parse(statusLine.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        }

        Assert.Equal(400, await RawStatusAsync("GET /api/dashboards/%00 HTTP/1.1\r\n"));
        Assert.Equal(400, await RawStatusAsync("GET /api/dashboards/client-stats%00 HTTP/1.1\r\n"));
        Assert.Equal(400, await RawStatusAsync("GET /api/dashboards/client-stats\0 HTTP/1.1\r\n"));
        Assert.Equal(414, await RawStatusAsync($"GET /api/dashboards/{new string('a', 20_000)} HTTP/1.1\r\n"));
        Assert.Equal(431, await RawStatusAsync($"GET /api/dashboards/client-stats HTTP/1.1\r\nX-Big: {new string('b', 64_000)}\r\n"));

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        var site = await db.NewWebsiteAsync();
        var user = await db.NewUserAsync(site, "client");
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/dashboards/client-stats");
        request.Headers.Authorization = new("Bearer", StatsCache.WebHost.Auth.TokenIssuer.Issue(web.Auth, new(site, "client", user), TimeSpan.FromMinutes(5)));
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(request)).StatusCode);
    }

    private async Task<long> CountOrdersAsync()
    {
        await using var command = db.DataSource.CreateCommand("select count(*) from orders");
        return (long)(await command.ExecuteScalarAsync())!;
    }

    internal static async Task<Problem> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string? title = null)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        var actual = new Problem(
            problem.GetProperty("title").GetString(),
            problem.TryGetProperty("detail", out var detail) ? detail.GetString() : null);
        Assert.False(string.IsNullOrWhiteSpace(actual.Title));
        if (title is not null)
        {
            Assert.Equal(title, actual.Title);
        }

        return actual;
    }

    internal sealed record Problem(string? Title, string? Detail);
}
