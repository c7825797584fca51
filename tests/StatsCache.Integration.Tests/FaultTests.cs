using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Npgsql;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// Faults the service must survive, on a PostgreSQL server of the tests' own (<see cref="ThrowawayPostgres"/>)
/// that they stop, start, break and slow down, with test catalogs of short TTLs and small cache settings so
/// each test takes seconds. In the database collection so they do not share the two cores with other tests.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class FaultTests(ThrowawayPostgres pg, ITestOutputHelper output) : IClassFixture<ThrowawayPostgres>
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task StoppedPostgresServesCachedEntriesStaleAndColdOnes503ThenRecoversWithoutRestart()
    {
        var ttl = TimeSpan.FromSeconds(2);
        var retryMax = TimeSpan.FromSeconds(2);
        using var catalog = new TestCatalog(TestCatalog.View("fault-summary", ttl, "summary", "row",
            "select count(*)::bigint as orders, @user_id as user_id from orders where website_id = @site_id and client_id = @user_id"));
        await using var web = Web(catalog, new()
        {
            ["StatsCache:Cache:RetryBaseDuration"] = "00:00:00.250",
            ["StatsCache:Cache:RetryMaxDuration"] = retryMax.ToString("c", CultureInfo.InvariantCulture),
        });
        const long site = 1;
        var warm = Enumerable.Range(1, 10).Select(u => (Id: (long)u, Http: web.ClientFor(site, "client", u))).ToArray();
        var cold = Enumerable.Range(1001, 5).Select(u => (Id: (long)u, Http: web.ClientFor(site, "client", u))).ToArray();
        foreach (var (id, http) in warm)
        {
            var first = await GetAsync(http, "/api/dashboards/fault-summary");
            Assert.Equal((HttpStatusCode.OK, false), (first.Status, first.Stale));
        }

        // Six readers cycle through the warm users, each every 10 ms; a seventh task checks liveness.
        var clock = Stopwatch.StartNew();
        var samples = new ConcurrentQueue<Sample>();
        var healthFailures = 0;
        var healthChecks = 0;
        using var stopLoad = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 6).Select(reader => Task.Run(async () =>
        {
            using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
            for (var n = reader; !stopLoad.IsCancellationRequested; n += 6)
            {
                var (id, http) = warm[n % warm.Length];
                var started = clock.Elapsed;
                var answer = await GetAsync(http, "/api/dashboards/fault-summary");
                samples.Enqueue(new Sample(id, started, clock.Elapsed, answer));
                await pace.WaitForNextTickAsync();
            }
        })).ToList();
        var health = Task.Run(async () =>
        {
            using var http = web.CreateClient();
            using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
            while (!stopLoad.IsCancellationRequested)
            {
                Interlocked.Increment(ref healthChecks);
                if ((await http.GetAsync("/healthz")).StatusCode != HttpStatusCode.OK)
                {
                    Interlocked.Increment(ref healthFailures);
                }

                await pace.WaitForNextTickAsync();
            }
        });
        await WaitUntilAsync(() => samples.Count >= 100, "the load under way");

        // PostgreSQL goes away.
        var stopRequestedAt = DateTimeOffset.UtcNow;
        await pg.StopAsync();
        var stoppedAt = clock.Elapsed;
        var stoppedAtUtc = DateTimeOffset.UtcNow;

        var coldAnswers = new List<Answer>();
        foreach (var (_, http) in cold)
        {
            coldAnswers.Add(await GetAsync(http, "/api/dashboards/fault-summary")); // loads, fails
            coldAnswers.Add(await GetAsync(http, "/api/dashboards/fault-summary")); // backing off: answered at once
        }

        // The outage lasts until every warm entry has been served stale, and at least two TTLs (several failed retries).
        await WaitUntilAsync(
            () => clock.Elapsed > stoppedAt + (2 * ttl)
                && warm.All(w => samples.Any(s => s.User == w.Id && s.StartedAt > stoppedAt && s.Answer.Stale)),
            "every cached entry served stale");

        var restartRequested = clock.Elapsed;
        await pg.StartAsync();
        var restartedAt = clock.Elapsed;
        var restartedAtUtc = DateTimeOffset.UtcNow;
        await WaitUntilAsync(
            () => warm.All(w => samples.Any(s => s.User == w.Id && s.StartedAt > restartedAt && !s.Answer.Stale)),
            "every cached entry fresh again");

        var coldAfter = 0;
        foreach (var (_, http) in cold)
        {
            await WaitUntilAsync(async () =>
            {
                var answer = await GetAsync(http, "/api/dashboards/fault-summary");
                coldAfter += answer.Status == HttpStatusCode.ServiceUnavailable ? 1 : 0;
                return answer.Status == HttpStatusCode.OK && !answer.Stale;
            }, "a cold entry answered after the restart");
        }

        await stopLoad.CancelAsync();
        await Task.WhenAll(readers);
        await health;

        var all = samples.ToList();
        var outage = all.Where(s => s.StartedAt > stoppedAt && s.FinishedAt < restartRequested).ToList();
        var recovery = warm.Select(w => all.Where(s => s.User == w.Id && s.StartedAt > restartedAt && !s.Answer.Stale).Min(s => s.FinishedAt) - restartedAt).ToList();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{all.Count} reads of cached entries, {all.Count(s => s.Answer.Stale)} served stale ({outage.Count} during the {(restartRequested - stoppedAt).TotalSeconds:F1} s outage, " +
            $"{outage.Count(s => s.Answer.Stale)} of them stale); {all.Count(s => s.Answer.Status != HttpStatusCode.OK)} not 200"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"cold entries during the outage: {coldAnswers.Count(a => a.Status == HttpStatusCode.ServiceUnavailable)} of {coldAnswers.Count} answered 503; " +
            $"{coldAfter} more 503s before they loaded after the restart"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"seconds from PostgreSQL accepting connections to each entry fresh: max {recovery.Max().TotalSeconds:F2}, min {recovery.Min().TotalSeconds:F2} " +
            $"(TTL {ttl.TotalSeconds} s, RetryMaxDuration {retryMax.TotalSeconds} s); /healthz {healthChecks} checks, {healthFailures} failed"));

        Assert.All(all, s => Assert.Equal(HttpStatusCode.OK, s.Answer.Status));
        Assert.Equal(0, healthFailures);
        foreach (var (id, _) in warm)
        {
            // asOf is the start of the last good load before the stop, and it does not move while PostgreSQL is away.
            var during = outage.Where(s => s.User == id).ToList();
            Assert.Contains(during, s => s.Answer.Stale);
            var asOf = Assert.Single(during.Select(s => s.Answer.AsOf).Distinct());
            Assert.InRange(asOf!.Value, stopRequestedAt - ttl - TimeSpan.FromSeconds(1), stoppedAtUtc);
        }

        Assert.All(coldAnswers, a =>
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, a.Status);
            Assert.Equal("application/problem+json", a.MediaType);
            Assert.Equal("The data source is unavailable.", a.Title);
            Assert.True(a.RetryAfter >= 1, "503 without Retry-After");
        });

        // Back without a restart of the service: the timers' retries reloaded every entry within one retry period.
        Assert.True(recovery.Max() <= (ttl > retryMax ? ttl : retryMax) + TimeSpan.FromSeconds(1.5),
            $"Entries took up to {recovery.Max().TotalSeconds:F1} s to refresh after PostgreSQL came back.");
        Assert.All(all.Where(s => s.StartedAt > restartedAt && !s.Answer.Stale), s => Assert.True(s.Answer.AsOf >= restartedAtUtc - TimeSpan.FromSeconds(1)));
    }

    [Fact]
    public async Task ViewWhoseSqlFailsAffectsOnlyThatViewAndIsLoggedAndCounted()
    {
        var ttl = TimeSpan.FromSeconds(1);
        await pg.ExecuteAsync("drop table if exists fault_probe; create table fault_probe (label text); insert into fault_probe values ('before')");
        using var catalog = new TestCatalog(
            TestCatalog.View("fault-good", ttl, "summary", "row", "select count(*)::bigint as orders from orders where website_id = @site_id and client_id = @user_id"),
            TestCatalog.View("fault-broken", ttl, "probe", "row", "select label from fault_probe"));
        var logs = new CapturingLoggerProvider();
        await using var web = Web(catalog, new()
        {
            ["StatsCache:Cache:RetryBaseDuration"] = "00:00:00.250",
            ["StatsCache:Cache:RetryMaxDuration"] = "00:00:01",
        }, logs);
        using var metrics = new MetricsRecorder(web.Services);
        var http = web.ClientFor(1, "client", 7);

        var good = await GetAsync(http, "/api/dashboards/fault-good");
        var broken = await GetAsync(http, "/api/dashboards/fault-broken");
        Assert.Equal((HttpStatusCode.OK, false, HttpStatusCode.OK, false), (good.Status, good.Stale, broken.Status, broken.Stale));

        await pg.ExecuteAsync("alter table fault_probe drop column label");
        var droppedAt = DateTimeOffset.UtcNow;
        await WaitUntilAsync(() => metrics.Total("statscache.loads", "fault-broken", "failure") >= 2, "two failed loads of the broken view");
        var goodLoadsBefore = metrics.Total("statscache.loads", "fault-good", "success");
        var countedAt = DateTimeOffset.UtcNow;

        // The other view of the same grain keeps refreshing: its asOf (when its load started) moves past
        // the failures and the count above, and a TTL past the drop (the two failures may come sooner), and it
        // is not stale.
        var refreshedAfter = countedAt > droppedAt + ttl ? countedAt : droppedAt + ttl;
        Answer goodAfter = good;
        await WaitUntilAsync(async () =>
        {
            goodAfter = await GetAsync(http, "/api/dashboards/fault-good");
            return goodAfter.AsOf > refreshedAfter;
        }, "the good view refreshed after the failure");
        Assert.Equal((HttpStatusCode.OK, false), (goodAfter.Status, goodAfter.Stale));
        Assert.True(metrics.Total("statscache.loads", "fault-good", "success") > goodLoadsBefore);
        Assert.Equal(0, metrics.Total("statscache.loads", "fault-good", "failure"));

        // The broken view keeps its last good numbers, marked stale.
        var brokenAfter = await GetAsync(http, "/api/dashboards/fault-broken");
        Assert.Equal((HttpStatusCode.OK, true, broken.AsOf), (brokenAfter.Status, brokenAfter.Stale, brokenAfter.AsOf));

        var failure = logs.Entries.First(e => e.Level == LogLevel.Warning && e.Message.Contains("fault-broken", StringComparison.Ordinal));
        Assert.Contains("site 1", failure.Message, StringComparison.Ordinal);
        Assert.Equal("42703", Assert.IsType<PostgresException>(failure.Exception).SqlState); // undefined_column
        Assert.DoesNotContain(logs.Entries, e => e.Level >= LogLevel.Warning && e.Message.Contains("fault-good", StringComparison.Ordinal));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"fault-broken: {metrics.Total("statscache.loads", "fault-broken", "failure")} failed loads; fault-good: " +
            $"{metrics.Total("statscache.loads", "fault-good", "success")} successful loads, 0 failed. Logged: {failure.Message}"));
    }

    [Fact]
    public async Task SlowLoadIsCancelledOnTheDatabaseAndReadersKeepTheLastSnapshot()
    {
        var loadTimeout = TimeSpan.FromSeconds(1);
        var marker = $"fault_slow_{Guid.NewGuid():N}";
        await pg.ExecuteAsync("drop table if exists fault_flag; create table fault_flag (slow boolean not null); insert into fault_flag values (false)");
        using var catalog = new TestCatalog(TestCatalog.View("fault-slow", TimeSpan.FromMinutes(5), "probe", "row",
            $"select 1 as n from pg_sleep((select case when slow then 30 else 0 end from fault_flag)) /* {marker} */"));
        await using var web = Web(catalog, new()
        {
            ["StatsCache:Cache:LoadTimeout"] = loadTimeout.ToString("c", CultureInfo.InvariantCulture),
            ["StatsCache:Cache:RetryBaseDuration"] = "00:01:00", // no retry by the timer while the test watches
        });
        using var metrics = new MetricsRecorder(web.Services);
        var http = web.ClientFor(1, "client", 8);

        var first = await GetAsync(http, "/api/dashboards/fault-slow");
        var sinceLoad = Stopwatch.StartNew();
        Assert.Equal((HttpStatusCode.OK, false), (first.Status, first.Stale));

        await pg.ExecuteAsync("update fault_flag set slow = true");
        await StatsCacheFactory.WaitOutRefreshFloorAsync(sinceLoad);
        var clock = Stopwatch.StartNew();
        var refresh = GetAsync(http, "/api/dashboards/fault-slow?refresh=true");

        // The query runs on a backend of the service's pool...
        (int Pid, DateTime Started)? running = null;
        await WaitUntilAsync(async () => (running = await RunningAsync(marker)) is not null, "the slow query running");

        // ...until the load timeout: the caller gets the last snapshot, stale, and the backend stops running it.
        var answer = await refresh;
        var answeredIn = clock.Elapsed;
        var sinceFailedLoad = Stopwatch.StartNew();
        Assert.Equal((HttpStatusCode.OK, true, first.AsOf), (answer.Status, answer.Stale, answer.AsOf));
        // The load's timer and the test's Stopwatch are different clocks: the timer may fire a tick (up to 15 ms) early by the
        // Stopwatch (it once answered at 0.99991 s of a 1 s timeout).
        Assert.InRange(answeredIn, loadTimeout - TimeSpan.FromMilliseconds(15), loadTimeout + TimeSpan.FromSeconds(2));
        await WaitUntilAsync(async () => !await IsStillRunningAsync(running!.Value), "the backend no longer running the slow query");
        var cancelledIn = clock.Elapsed;
        Assert.True(cancelledIn < TimeSpan.FromSeconds(5), $"The slow query ran {cancelledIn.TotalSeconds:F1} s; pg_sleep(30) was not cancelled.");
        Assert.Equal(1, metrics.Total("statscache.loads", "fault-slow", "failure"));

        var later = await GetAsync(http, "/api/dashboards/fault-slow");
        Assert.Equal((HttpStatusCode.OK, true, first.AsOf), (later.Status, later.Stale, later.AsOf));

        // Fast again: a refresh brings fresh numbers.
        await pg.ExecuteAsync("update fault_flag set slow = false");
        await StatsCacheFactory.WaitOutRefreshFloorAsync(sinceFailedLoad);
        var recovered = await GetAsync(http, "/api/dashboards/fault-slow?refresh=true");
        Assert.Equal((HttpStatusCode.OK, false), (recovered.Status, recovered.Stale));
        Assert.True(recovered.AsOf > first.AsOf);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"LoadTimeout {loadTimeout.TotalSeconds} s: the refresh answered stale after {answeredIn.TotalSeconds:F2} s; " +
            $"backend {running!.Value.Pid} stopped running pg_sleep(30) {cancelledIn.TotalSeconds:F2} s after the refresh began"));
    }

    private async Task<(int Pid, DateTime Started)?> RunningAsync(string marker)
    {
        await using var command = pg.DataSource.CreateCommand(
            "select pid, query_start from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and strpos(query, @marker) > 0");
        command.Parameters.AddWithValue("marker", marker);
        await using var reader = await command.ExecuteReaderAsync();
        return await reader.ReadAsync() ? (reader.GetInt32(0), reader.GetDateTime(1)) : null;
    }

    private async Task<bool> IsStillRunningAsync((int Pid, DateTime Started) query)
    {
        await using var command = pg.DataSource.CreateCommand(
            "select count(*) from pg_stat_activity where pid = @pid and query_start = @started and state = 'active'");
        command.Parameters.AddWithValue("pid", query.Pid);
        command.Parameters.AddWithValue("started", query.Started);
        return (long)(await command.ExecuteScalarAsync())! > 0;
    }

    private StatsCacheFactory Web(TestCatalog catalog, Dictionary<string, string> settings, ILoggerProvider? logs = null)
    {
        var factory = new StatsCacheFactory { LoggerProvider = logs };
        factory.Settings["ConnectionStrings:Stats"] = pg.ConnectionString;
        factory.Settings["StatsCache:CatalogPath"] = catalog.Path;
        foreach (var (key, value) in settings)
        {
            factory.Settings[key] = value;
        }

        return factory;
    }

    internal static async Task<Answer> GetAsync(HttpClient http, string path)
    {
        using var response = await http.GetAsync(path);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        var ok = response.StatusCode == HttpStatusCode.OK;
        return new Answer(
            response.StatusCode,
            response.Content.Headers.ContentType?.MediaType,
            ok && body.GetProperty("stale").GetBoolean(),
            ok ? body.GetProperty("asOf").GetDateTimeOffset() : null,
            ok ? null : body.GetProperty("title").GetString(),
            response.Headers.RetryAfter?.Delta is { } delta ? (int)delta.TotalSeconds : null);
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var started = Stopwatch.StartNew();
        using var poll = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        while (!await condition())
        {
            if (started.Elapsed > Deadline)
            {
                throw new TimeoutException($"Waited {Deadline.TotalSeconds} s for {what}.");
            }

            await poll.WaitForNextTickAsync();
        }
    }

    private static Task WaitUntilAsync(Func<bool> condition, string what) => WaitUntilAsync(() => Task.FromResult(condition()), what);

    internal sealed record Answer(HttpStatusCode Status, string? MediaType, bool Stale, DateTimeOffset? AsOf, string? Title, int? RetryAfter);

    private sealed record Sample(long User, TimeSpan StartedAt, TimeSpan FinishedAt, Answer Answer);
}
