using System.Collections.ObjectModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Trace;
using StatsCache.Hosting;
using StatsCache.WebHost.Auth;
using OrleansActivitySources = Orleans.Diagnostics.ActivitySources;

namespace StatsCache.Integration.Tests;

/// <summary>What operators see: /metrics, traces, logs that keep secrets, readiness, the Orleans Dashboard switch.</summary>
[Collection(DatabaseCollection.Name)]
public sealed partial class ObservabilityTests(TestDatabase db, StatsCacheFactory factory)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task MetricsEndpointServesStatsCacheAndRequestSeriesByView()
    {
        var host = factory;
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        Assert.Equal(HttpStatusCode.OK, (await host.ClientFor(site, "client", client).GetAsync("/api/dashboards/client-stats")).StatusCode);

        // Scrapes are cached briefly, and ASP.NET Core records a request when it has ended: poll.
        var http = host.CreateClient();
        string[] wanted =
        [
            @"^statscache_loads_total\{(?=[^}]*view=""client-stats"")(?=[^}]*outcome=""success"")[^}]*\} [1-9]",
            @"^statscache_reads_total\{(?=[^}]*view=""client-stats"")[^}]*\} [1-9]",
            @"^statscache_load_duration_seconds_count\{(?=[^}]*view=""client-stats"")[^}]*\} [1-9]",
            @"^statscache_entries(\{[^}]*\})? \d",
            @"^http_server_request_duration_seconds_count\{(?=.*http_route=""/api/dashboards/\{view\}"")(?=.*view=""client-stats"")(?=.*http_response_status_code=""200"").*\} [1-9]",
            @"^orleans_",
        ];
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var response = await http.GetAsync("/metrics");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType);
            var text = await response.Content.ReadAsStringAsync();
            var missing = wanted.Where(pattern => !Regex.IsMatch(text, pattern, RegexOptions.Multiline)).ToList();
            if (missing.Count == 0)
            {
                // Tagged by view only: no label names a site or a user in any series (a value may: table="users").
                Assert.DoesNotMatch(new Regex(@"^statscache_[^{]*\{(?:[^}]*,)?[a-z_]*(site|user)[a-z_]*=""", RegexOptions.Multiline), text);
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"/metrics lacks {string.Join(", ", missing)}:\n{text}");
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }

    [Fact]
    public async Task OneDashboardRequestIsTracedFromHttpThroughTheGrainToTheSqlBatch()
    {
        var spans = new LockedCollection<Activity>();
        await using var traced = new StatsCacheFactory
        {
            // Tracing is on when an OTLP endpoint is set; nothing listens on this one, the in-memory exporter reads the spans.
            Settings = { [TelemetryExtensions.OtlpEndpointKey] = $"http://127.0.0.1:{StatsCacheFactory.FreePort()}" },
        };
        await using var host = traced.WithWebHostBuilder(b => b.ConfigureServices(
            services => services.ConfigureOpenTelemetryTracerProvider(t => t.AddInMemoryExporter(spans))));

        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var http = host.CreateClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Bearer", TokenIssuer.Issue(traced.Auth, new Caller(site, "client", client), TimeSpan.FromMinutes(5)));

        // The caller's own trace: every span of this request carries its trace id, whatever else the process traces meanwhile.
        var traceId = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/dashboards/client-stats");
        request.Headers.Add("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01");
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(request)).StatusCode);

        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var trace = spans.Snapshot().Where(a => a.TraceId == traceId).ToDictionary(a => a.SpanId);
            var server = trace.Values.FirstOrDefault(a => a.Source.Name == "Microsoft.AspNetCore" && a.Kind == ActivityKind.Server);
            var chain = trace.Values.Where(a => a.Source.Name == "Npgsql").Select(sql => Ancestry(sql, trace)).FirstOrDefault(c => c[^1] == server);
            if (server is not null && chain is not null)
            {
                Assert.Contains(chain, a => a.Source.Name == OrleansActivitySources.ApplicationGrainActivitySourceName && a.Kind == ActivityKind.Server);
                Assert.Equal("/api/dashboards/{view}", server.GetTagItem("http.route"));
                return;
            }

            Assert.True(DateTime.UtcNow < deadline,
                "No chain from the HTTP request to an Npgsql span; spans of the trace: " +
                string.Join(", ", trace.Values.Select(a => $"{a.Source.Name}:{a.DisplayName}:{a.Kind}")));
            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }
    }

    [Fact]
    public async Task LogsNeverContainTokensSigningKeysOrPasswords()
    {
        var password = $"pw-{Guid.NewGuid():N}";
        await using var database = await TemporaryDatabase.CreateAsync(db, password, withSchema: true);
        var logs = new CapturingLoggerProvider();
        await using var logged = new StatsCacheFactory
        {
            Settings =
            {
                ["ConnectionStrings:Stats"] = database.ConnectionString,
                // Membership and storage in PostgreSQL too, so Orleans' own start-up logging sees a password-bearing connection string.
                ["ConnectionStrings:Orleans"] = new Npgsql.NpgsqlConnectionStringBuilder(db.ConnectionString) { Password = password }.ConnectionString,
                ["Orleans:Membership"] = "AdoNet",
                ["Orleans:Storage"] = "AdoNet",

                // Everything, as an operator chasing a problem might configure it.
                ["Logging:LogLevel:Default"] = "Trace",
                ["Logging:LogLevel:Microsoft.AspNetCore"] = "Trace",
                ["Logging:LogLevel:Orleans"] = "Trace",
                ["Logging:LogLevel:Npgsql"] = "Trace",
            },
        };
        await using var host = logged.WithWebHostBuilder(b => b.ConfigureLogging(logging => logging.AddProvider(logs)));

        var site = await database.NewWebsiteAsync();
        var user = await database.NewUserAsync(site, "client");
        var token = TokenIssuer.Issue(logged.Auth, new Caller(site, "client", user), TimeSpan.FromMinutes(5));
        var otherKey = new AuthOptions { SigningKey = $"other-{Guid.NewGuid():N}-{Guid.NewGuid():N}" };
        var forged = TokenIssuer.Issue(otherKey, new Caller(site, "client", user), TimeSpan.FromMinutes(5));
        var expired = TokenIssuer.Issue(logged.Auth, new Caller(site, "client", user), TimeSpan.FromMinutes(5), DateTimeOffset.UtcNow.AddHours(-1));

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(host, token, "/api/dashboards")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(host, token, "/api/dashboards/client-stats")).StatusCode);
        var sinceLoad = Stopwatch.StartNew();
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(host, forged, "/api/dashboards/client-stats")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(host, expired, "/api/dashboards/client-stats")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(host, token + "x", "/api/dashboards/client-stats")).StatusCode);

        // A failing load: the cached snapshot is served stale, and the failure is logged once, with view, site and error.
        await database.RefuseConnectionsAsync();
        await StatsCacheFactory.WaitOutRefreshFloorAsync(sinceLoad);
        var stale = await SendAsync(host, token, "/api/dashboards/client-stats?refresh=true");
        Assert.Equal(HttpStatusCode.OK, stale.StatusCode);
        Assert.True((await stale.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("stale").GetBoolean());
        await SendAsync(host, token, "/readyz");
        await database.AcceptConnectionsAsync();

        var failures = logs.Entries
            .Where(e => e.Level == LogLevel.Warning && e.Values.GetValueOrDefault("View") == "client-stats"
                && e.Values.GetValueOrDefault("SiteId") == site.ToString(CultureInfo.InvariantCulture))
            .ToList();
        Assert.NotEmpty(failures);
        Assert.All(failures, failure =>
        {
            Assert.NotNull(failure.Exception);
            Assert.Contains("client-stats", failure.Message);
        });

        Assert.True(logs.Entries.Count > 50, $"Only {logs.Entries.Count} log entries were captured: the capture does not work.");
        foreach (var (secret, what) in new[]
        {
            (token, "a bearer token"), (forged, "a forged token"), (expired, "an expired token"), (token.Split('.')[2], "a token's signature"),
            (logged.Auth.SigningKey!, "the signing key"), (otherKey.SigningKey!, "another signing key"), (password, "the database password"),
            ("Password=", "a connection string's password"),
        })
        {
            var leak = logs.Entries.FirstOrDefault(e => e.AllText().Contains(secret, StringComparison.OrdinalIgnoreCase));
            Assert.True(leak is null, $"The logs contain {what}: {leak?.Category} {leak?.Level}: {leak?.AllText()}");
        }
    }

    [Fact]
    public async Task ReadinessFailsWhilePostgresRefusesConnectionsAndRecovers()
    {
        await using var database = await TemporaryDatabase.CreateAsync(db, password: $"pw-{Guid.NewGuid():N}");
        await using var host = new StatsCacheFactory { Settings = { ["ConnectionStrings:Stats"] = database.ConnectionString } };
        var http = host.CreateClient();

        var ready = await WaitForReadinessAsync(http, HttpStatusCode.OK);
        Assert.Equal("Healthy", ready.GetProperty("checks").GetProperty("postgresql").GetProperty("status").GetString());

        await database.RefuseConnectionsAsync();
        var down = await WaitForReadinessAsync(http, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("Unhealthy", down.GetProperty("status").GetString());
        Assert.Equal("Unhealthy", down.GetProperty("checks").GetProperty("postgresql").GetProperty("status").GetString());
        Assert.Equal("Healthy", down.GetProperty("checks").GetProperty("orleans").GetProperty("status").GetString());
        var body = down.GetRawText();
        Assert.True(body.Length < 400, $"The readiness answer is not small: {body}");
        Assert.DoesNotContain(database.Name, body);
        Assert.DoesNotContain("Host=", body, StringComparison.OrdinalIgnoreCase);

        // Liveness is the process: it does not depend on PostgreSQL.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);

        await database.AcceptConnectionsAsync();
        await WaitForReadinessAsync(http, HttpStatusCode.OK);
    }

    [Fact]
    public async Task OrleansDashboardIsOffByDefault()
    {
        Assert.Equal(HttpStatusCode.NotFound, (await factory.CreateClient().GetAsync("/orleans-dashboard")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await factory.CreateClient().GetAsync("/orleans-dashboard/")).StatusCode);
    }

    [Fact]
    public async Task OrleansDashboardIsServedWhenEnabled()
    {
        await using var host = new StatsCacheFactory { Settings = { ["Orleans:IsDashboardEnabled"] = "true", ["Orleans:DashboardPath"] = "/ops/orleans" } };
        var response = await host.CreateClient().GetAsync("/ops/orleans/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
    }

    private static async Task<HttpResponseMessage> SendAsync(WebApplicationFactory<Program> host, string token, string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await host.CreateClient().SendAsync(request);
    }

    private static async Task<JsonElement> WaitForReadinessAsync(HttpClient http, HttpStatusCode expected)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var response = await http.GetAsync("/readyz");
            var body = await response.Content.ReadAsStringAsync();
            if (response.StatusCode == expected)
            {
                Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
                return JsonDocument.Parse(body).RootElement.Clone();
            }

            Assert.True(DateTime.UtcNow < deadline, $"/readyz stayed {(int)response.StatusCode} {body}, expected {(int)expected}.");
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }

    /// <summary>The span and its parents within the trace, up to the first whose parent is not in it.</summary>
    private static List<Activity> Ancestry(Activity span, Dictionary<ActivitySpanId, Activity> trace)
    {
        var chain = new List<Activity> { span };
        while (trace.TryGetValue(chain[^1].ParentSpanId, out var parent) && chain.Count < 50)
        {
            chain.Add(parent);
        }

        return chain;
    }

    /// <summary>A collection the exporter adds to on its thread while the test reads it on another.</summary>
    private sealed class LockedCollection<T> : Collection<T>
    {
        private readonly Lock _lock = new();

        public T[] Snapshot()
        {
            lock (_lock)
            {
                return [.. Items];
            }
        }

        protected override void InsertItem(int index, T item)
        {
            lock (_lock)
            {
                base.InsertItem(index, item);
            }
        }
    }
}
