using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using StatsCache.Changes;
using StatsCache.Silo;
using StatsCache.WebHost.Setup;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// A real cluster: silo processes with <c>Orleans:Membership=AdoNet</c> and <c>Orleans:Storage=AdoNet</c> on the
/// test database (orleans.sql applied by the fixture), and the web host as their client finding gateways in
/// the membership table. Every test runs its own cluster (a fresh ClusterId) and its own website.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed partial class ClusterTests(TestDatabase db, ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TwoSilosOnPostgresMembershipServeEachUserTheirOwnNumbers()
    {
        var settings = ClusterSettings();
        await using var silos = await StartActiveSilosAsync(settings, count: 2);
        await using var web = ClientWebHost(settings);

        var site = await db.NewWebsiteAsync();
        var users = new List<(long Id, decimal Spent)>();
        for (var i = 1; i <= 6; i++)
        {
            var user = await db.NewUserAsync(site, "client");
            await InsertOrderAsync(site, user, price: 10m * i + 0.5m);
            users.Add((user, 10m * i + 0.5m));
        }

        var answers = await Task.WhenAll(users.Select(u => GetClientStatsAsync(web, site, u.Id)));
        for (var i = 0; i < users.Count; i++)
        {
            Assert.Equal(users[i].Spent, answers[i].Spent);
        }

        // Each user's grain kept its snapshot in PostgreSQL, under its own key.
        await WaitUntilAsync(async () => await StoredSnapshotsAsync(site) == users.Count, $"{users.Count} snapshots in OrleansStorage");
        Assert.Equal(HttpStatusCode.OK, (await web.CreateClient().GetAsync("/readyz")).StatusCode);
    }

    [Fact]
    public async Task ACleanStopOfTheClusterLogsNothingAtWarningOrAboveAndKeepsEverySnapshot()
    {
        var settings = ClusterSettings();
        await using var silos = await StartActiveSilosAsync(settings, count: 2);
        var logs = new CapturingLoggerProvider();
        var web = ClientWebHost(settings);
        web.LoggerProvider = logs;
        var site = await db.NewWebsiteAsync();
        var clients = new List<long>();
        try
        {
            // Entries on both silos watched by the web host's near-cache (two reads each), and a change that reloads one.
            for (var i = 0; i < 8; i++)
            {
                clients.Add(await db.NewUserAsync(site, "client"));
                await GetClientStatsAsync(web, site, clients[^1]);
                await GetClientStatsAsync(web, site, clients[^1]);
            }

            await InsertOrderAsync(site, clients[0], price: 4m);
            await WaitUntilAsync(async () => (await GetClientStatsAsync(web, site, clients[0])).Spent == 4m, "the write visible");
        }
        finally
        {
            // As a deploy stops it: the web host first (it drains), then the silos (SIGTERM), each of which must log nothing loud.
            var before = logs.Entries.Count;
            await web.DisposeAsync();
            var loud = logs.Entries.Skip(before).Where(e => e.Level >= LogLevel.Warning && !IsOrleansManifestStopError(e))
                .Select(e => $"web host: {e.Level} {e.Category}: {e.Message}").ToList();
            var outputAtStop = Enumerable.Range(0, 2).Select(i => silos.OutputOf(i).Length).ToArray();
            var exitCodes = await silos.StopAllAsync();
            for (var i = 0; i < 2; i++)
            {
                loud.AddRange(silos.OutputOf(i)[outputAtStop[i]..].Split('\n')
                    .Where(line => LoudLine().IsMatch(line)).Select(line => $"silo {i}: {line}"));
            }

            output.WriteLine(string.Join(Environment.NewLine, loud));
            Assert.True(loud.Count == 0, $"The stop logged {loud.Count} lines at Warning or above, the first: {loud.FirstOrDefault()}");
            Assert.All(exitCodes, code => Assert.Equal(0, code));
        }

        // Nothing a stop should keep is lost: every entry's snapshot is in storage.
        Assert.Equal(clients.Count, await StoredSnapshotsAsync(site));
    }

    // Orleans 10's own, now and then: ClientClusterManifestProvider.RunAsync awaits Task.Delay(…, shutdown token) outside its
    // try while it has no live gateway, so a client stopping then faults the loop and StopAsync logs this error (seen in two
    // CI runs). It says nothing about StatsCache's stop, and no setting avoids it.
    private static bool IsOrleansManifestStopError(CapturingLoggerProvider.Entry entry) =>
        entry.Category == "Orleans.Runtime.ClientClusterManifestProvider" && entry.Message == "Error stopping cluster manifest provider.";

    [GeneratedRegex(@"^(\S+ )?(warn|fail|crit):")]
    private static partial Regex LoudLine();

    [Fact]
    public async Task AfterEverySiloRestartsTheFirstReadIsTheStoredSnapshot()
    {
        var settings = ClusterSettings();
        var site = await db.NewWebsiteAsync();
        var user = await db.NewUserAsync(site, "client");
        await InsertOrderAsync(site, user, price: 12.5m);

        ClientStats before;
        await using (var silos = new SiloGroup())
        {
            await silos.StartAsync(db.ConnectionString, settings, count: 2);
            await using (var web = ClientWebHost(settings))
            {
                before = await GetClientStatsAsync(web, site, user);
                Assert.Equal(12.5m, before.Spent);
                await WaitUntilAsync(async () => await StoredSnapshotsAsync(site) == 1, "the snapshot in OrleansStorage");
            }

            var exitCodes = await silos.StopAllAsync();
            Assert.All(exitCodes, code => Assert.Equal(0, code));
        }

        // The source now says something else: an answer of 12.5 with the old asOf can only come from storage.
        await InsertOrderAsync(site, user, price: 7.5m);

        await using var restarted = new SiloGroup();
        await restarted.StartAsync(db.ConnectionString, settings, count: 1);
        await using var webAfter = ClientWebHost(settings);
        var after = await GetClientStatsAsync(webAfter, site, user);
        Assert.Equal(before.AsOf, after.AsOf);
        Assert.Equal(12.5m, after.Spent);
        Assert.True(after.Stale); // the order written while no grain was active reached nobody: not vouched for yet

        // The restored entry reloads within a second of the reactivation; from then on the answer is fresh and current.
        var restoredRead = Stopwatch.StartNew();
        await WaitUntilAsync(async () => await GetClientStatsAsync(webAfter, site, user) is { Stale: false, Spent: 20m }, "the fresh answer after the reload");
        output.WriteLine($"fresh {restoredRead.Elapsed.TotalMilliseconds:F0} ms after the first read of the restored snapshot");
        Assert.True(restoredRead.Elapsed < TimeSpan.FromSeconds(2), $"The restored snapshot was served stale for {restoredRead.Elapsed.TotalSeconds:F1} s.");

        // Stored with Orleans' serializer (binary, [Alias]ed types), not the provider's default JSON.
        var payload = await ScalarAsync<byte[]>(
            "select PayloadBinary from OrleansStorage where GrainIdExtensionString = @key", ("key", $"{site}/client/{user}"));
        Assert.NotEqual((byte)'{', payload[0]);
    }

    [Fact]
    public async Task KillingASiloUnderLoadFailsNoRequestAndEveryRequestCompletesWithinTenSeconds()
    {
        var settings = ClusterSettings();
        await using var silos = await StartActiveSilosAsync(settings, count: 2);
        settings["StatsCache:RequestLimit:IsEnabled"] = "false"; // 8 readers as fast as they can go stand for many callers
        await using var web = ClientWebHost(settings);

        var site = await db.NewWebsiteAsync();
        var users = new List<(long Id, decimal Spent)>();
        for (var i = 1; i <= 40; i++)
        {
            var user = await db.NewUserAsync(site, "client");
            await InsertOrderAsync(site, user, price: i + 0.25m);
            users.Add((user, i + 0.25m));
        }

        var clients = users.ToDictionary(u => u.Id, u => web.ClientFor(site, "client", u.Id));
        await Task.WhenAll(users.Select(u => GetClientStatsAsync(clients[u.Id], u.Id))); // warm: every grain active, every snapshot stored
        await WaitUntilAsync(async () => await StoredSnapshotsAsync(site) == users.Count, "every snapshot stored");

        // Eight readers cycle through the users; one silo is killed once they are well under way.
        var results = new System.Collections.Concurrent.ConcurrentBag<(TimeSpan Started, TimeSpan Took, string? Error)>();
        var clock = Stopwatch.StartNew();
        var count = 0;
        using var stop = new CancellationTokenSource(Deadline * 2); // the load ends 12 s after the kill, or on this safety net
        var underWay = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var readers = Enumerable.Range(0, 8).Select(reader => Task.Run(async () =>
        {
            for (var n = reader; !stop.IsCancellationRequested; n += 8)
            {
                var (id, spent) = users[n % users.Count];
                var started = clock.Elapsed;
                string? error = null;
                try
                {
                    var stats = await GetClientStatsAsync(clients[id], id);
                    error = stats.Spent == spent ? null : $"user {id} got total {stats.Spent}, expected {spent}";
                }
                catch (Exception e)
                {
                    error = e.Message;
                }

                results.Add((started, clock.Elapsed - started, error));
                if (Interlocked.Increment(ref count) >= 400)
                {
                    underWay.TrySetResult();
                }
            }
        })).ToList();

        await underWay.Task.WaitAsync(Deadline);
        var killedAt = clock.Elapsed;
        await silos.KillAsync(0);
        stop.CancelAfter(TimeSpan.FromSeconds(12));
        await Task.WhenAll(readers);

        var afterKill = results.Where(r => r.Started + r.Took >= killedAt).ToList();
        var failed = results.Where(r => r.Error is not null).ToList();
        var slowest = afterKill.Max(r => r.Took);
        output.WriteLine($"{results.Count} requests, {afterKill.Count} finished after the kill, {failed.Count} failed, slowest {slowest.TotalSeconds:F2} s");
        Assert.True(failed.Count == 0, $"{failed.Count} requests failed, e.g. {failed.FirstOrDefault().Error}");
        Assert.True(slowest < TimeSpan.FromSeconds(10), $"The slowest request after the kill took {slowest.TotalSeconds:F1} s.");
        Assert.Contains(afterKill, r => r.Started > killedAt + TimeSpan.FromSeconds(10)); // the load really went on past the failover

        // After the failover, near-cached entries are current again: a write shows within a second (the survivor's
        // change feed, its pushes to this web host, which dropped what the dead silo's grains had pushed).
        var (someone, spentBefore) = users[0];
        await InsertOrderAsync(site, someone, price: 1m);
        var written = Stopwatch.StartNew(); // from the commit, as ./bench.sh fresh measures
        await WaitUntilAsync(async () => (await GetClientStatsAsync(clients[someone], someone)).Spent == spentBefore + 1m, "the write after the failover visible");
        output.WriteLine($"after the failover, write to visible {written.Elapsed.TotalMilliseconds:F0} ms");
        Assert.True(written.Elapsed < TimeSpan.FromSeconds(1), $"After the failover a write showed after {written.Elapsed.TotalMilliseconds:F0} ms.");
    }

    [Fact]
    public async Task HungSiloEntriesStopBeingAnsweredFromTheNearCacheWithinTheLease()
    {
        var lease = TimeSpan.FromSeconds(2);
        var settings = ClusterSettings();
        await using var silos = await StartActiveSilosAsync(settings, count: 1);
        var webSettings = new Dictionary<string, string>(settings)
        {
            ["StatsCache:NearCache:LeaseDuration"] = lease.ToString("c", CultureInfo.InvariantCulture),
            ["StatsCache:Api:GrainRetryTimeout"] = "00:00:01", // a read of the hung silo answers 503 soon
        };
        await using var web = ClientWebHost(webSettings);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var http = web.ClientFor(site, "client", client);
        await GetClientStatsAsync(http, client);

        // SIGSTOP: the silo neither answers nor leaves the cluster, so nothing tells the web host. Reads answered from
        // the near-cache stop when the lease taken before the stop runs out.
        await silos.SignalAsync(0, "STOP");
        var stopped = Stopwatch.StartNew();
        var lastHit = TimeSpan.Zero;
        try
        {
            while (stopped.Elapsed < lease + TimeSpan.FromSeconds(3))
            {
                var hitsBefore = metrics.Total("statscache.nearcache.hits");
                var response = await http.GetAsync("/api/dashboards/client-stats");
                if (metrics.Total("statscache.nearcache.hits") > hitsBefore)
                {
                    Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                    lastHit = stopped.Elapsed;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(50));
            }
        }
        finally
        {
            await silos.SignalAsync(0, "CONT");
        }

        output.WriteLine($"last near-cache answer {lastHit.TotalMilliseconds:F0} ms after SIGSTOP (lease {lease.TotalSeconds} s)");
        Assert.True(lastHit > TimeSpan.Zero, "No read was answered from the near-cache after the stop: the test saw nothing.");
        Assert.True(lastHit <= lease, $"The near-cache answered {lastHit.TotalMilliseconds:F0} ms after SIGSTOP, past the {lease.TotalSeconds} s lease.");
    }

    [Fact]
    public async Task EveryColdReadOfAHungSiloAnswers503WithinTheBoundAndAnswersAgainOnceItResumes()
    {
        // The shipped GrainRetryTimeout: the bound a caller is promised (docs/faults.md).
        var bound = new StatsCache.WebHost.Api.ApiOptions().GrainRetryTimeout;
        var readTimeout = TimeSpan.Parse(IUserDashboardGrain.ReadTimeout, CultureInfo.InvariantCulture);
        bound = bound > readTimeout ? bound : readTimeout;
        var settings = ClusterSettings();
        await using var silos = await StartActiveSilosAsync(settings, count: 1);
        await using var web = ClientWebHost(settings);

        var site = await db.NewWebsiteAsync();
        var warm = await db.NewUserAsync(site, "client");
        await GetClientStatsAsync(web, site, warm); // the web host is connected to the silo's gateway
        var clients = new List<(long Id, decimal Spent)>();
        for (var i = 1; i <= 24; i++)
        {
            var user = await db.NewUserAsync(site, "client");
            await InsertOrderAsync(site, user, price: i + 0.5m);
            clients.Add((user, i + 0.5m));
        }

        var admins = new List<long>();
        for (var i = 0; i < 8; i++)
        {
            admins.Add(await db.NewUserAsync(site, "admin"));
        }

        // Cold reads (no grain active, nothing near-cached) of every kind, all at once: single reads, batches, site-scoped
        // reads (through the caller's grain to the site's), and live streams' first events.
        var reads = new List<(string Path, HttpClient Http)>();
        for (var i = 0; i < clients.Count; i++)
        {
            var http = web.ClientFor(site, "client", clients[i].Id);
            reads.Add((i % 3 == 0 ? "/api/dashboards/batch?view=client-stats&view=client-loyalty" : "/api/dashboards/client-stats", http));
        }

        reads.AddRange(admins.Select(admin => ("/api/dashboards/admin-overview", web.ClientFor(site, "admin", admin))));
        var liveCallers = clients.Take(4).Select(c => web.ClientFor(site, "client", c.Id)).ToList();

        await silos.SignalAsync(0, "STOP");
        (string Path, HttpStatusCode Status, string? RetryAfter, string Body, TimeSpan Took)[] answers;
        (TimeSpan Took, ServerEvent?[] Events, EventStream Stream)[] lives;
        try
        {
            var asked = reads.Select(async read =>
            {
                var started = Stopwatch.StartNew();
                using var response = await read.Http.GetAsync(read.Path);
                var body = await response.Content.ReadAsStringAsync();
                return (read.Path, response.StatusCode, response.Headers.RetryAfter?.ToString(), body, started.Elapsed);
            }).ToList();
            var opened = liveCallers.Select(async http =>
            {
                var started = Stopwatch.StartNew();
                var stream = await EventStream.OpenAsync(http, "/api/dashboards/live?view=client-stats&view=client-loyalty");
                var events = new[] { await stream.NextAsync(bound * 2), await stream.NextAsync(bound * 2) };
                return (started.Elapsed, events, stream);
            }).ToList();
            answers = await Task.WhenAll(asked);
            lives = await Task.WhenAll(opened);
        }
        finally
        {
            await silos.SignalAsync(0, "CONT");
        }

        var took = answers.Select(a => a.Took).Concat(lives.Select(l => l.Took)).ToList();
        output.WriteLine($"hung silo: {answers.Length} reads and {lives.Length} live streams, bound {bound.TotalSeconds} s; " +
            $"answered in {took.Min().TotalSeconds:F2}-{took.Max().TotalSeconds:F2} s");
        foreach (var (path, status, retryAfter, body, elapsed) in answers)
        {
            Assert.True(status == HttpStatusCode.ServiceUnavailable, $"{path}: {(int)status} {body}");
            Assert.NotNull(retryAfter);
            Assert.Contains("The cache cluster is unavailable.", body, StringComparison.Ordinal);
            Assert.True(elapsed <= bound + TimeSpan.FromSeconds(1), $"{path} answered after {elapsed.TotalSeconds:F2} s, past {bound.TotalSeconds} s + 1 s.");
        }

        foreach (var (elapsed, events, _) in lives)
        {
            Assert.All(events, e => Assert.Contains("\"status\":503", e!.Data, StringComparison.Ordinal));
            Assert.True(elapsed <= bound + TimeSpan.FromSeconds(1), $"A live stream's first events came after {elapsed.TotalSeconds:F2} s.");
        }

        // Resumed: every caller gets its own numbers again, and every live stream its snapshots.
        await Task.WhenAll(clients.Select(c => WaitUntilAsync(async () =>
        {
            var response = await web.ClientFor(site, "client", c.Id).GetAsync("/api/dashboards/client-stats");
            return response.StatusCode == HttpStatusCode.OK && await response.Content.ReadFromJsonAsync<JsonElement>() is var body
                && body.GetProperty("data").GetProperty("summary").GetProperty("total_spent").GetDecimal() == c.Spent;
        }, $"user {c.Id}'s answer after SIGCONT")));
        await Task.WhenAll(admins.Select(a => WaitUntilAsync(
            async () => (await web.ClientFor(site, "admin", a).GetAsync("/api/dashboards/admin-overview")).StatusCode == HttpStatusCode.OK,
            $"admin {a}'s answer after SIGCONT")));
        foreach (var (_, _, stream) in lives)
        {
            await using (stream)
            {
                var resumed = Stopwatch.StartNew();
                var snapshots = new HashSet<string>();
                while (snapshots.Count < 2)
                {
                    Assert.True(resumed.Elapsed < Deadline, "A live stream got no snapshot after SIGCONT.");
                    if (await stream.NextAsync(Deadline) is { Comment: null } e && e.Data.Contains("\"asOf\"", StringComparison.Ordinal))
                    {
                        snapshots.Add(e.Name);
                    }
                }
            }
        }
    }

    [Fact]
    public async Task AWebHostThatLeftGetsNoMoreHeartbeatsFromItsSilo()
    {
        var settings = ClusterSettings();
        await using var silos = await StartActiveSilosAsync(settings, count: 1);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        await using (var web = ClientWebHost(settings))
        {
            using var metrics = new MetricsRecorder(web.Services);
            await GetClientStatsAsync(web, site, client); // its grain now holds the web host's watcher for minutes
            await WaitUntilAsync(() => Task.FromResult(metrics.Total("statscache.nearcache.heartbeats") > 0), "a heartbeat from the silo");
        }

        // The web host stopped while its watch still runs for minutes: its heartbeats go unanswered, and after a few the
        // silo stops sending them instead of failing at it every second until the watch ends.
        await WaitUntilAsync(
            () => Task.FromResult(silos.OutputOf(0).Contains("heartbeats unanswered: no more until it reads again", StringComparison.Ordinal)),
            "the silo giving up on the gone web host's watcher");
    }

    [Fact]
    public async Task ClientWebHostSurvivesARestartOfEverySilo()
    {
        var settings = ClusterSettings();
        var site = await db.NewWebsiteAsync();
        var user = await db.NewUserAsync(site, "client");
        await InsertOrderAsync(site, user, price: 3m);
        await using var web = ClientWebHost(settings);

        await using (var silos = new SiloGroup())
        {
            await silos.StartAsync(db.ConnectionString, settings, count: 1);
            Assert.Equal(3m, (await GetClientStatsAsync(web, site, user)).Spent);
            Assert.All(await silos.StopAllAsync(), code => Assert.Equal(0, code));
        }

        // The same web host, never restarted, finds the new silo's gateway and answers again.
        await using var restarted = new SiloGroup();
        await restarted.StartAsync(db.ConnectionString, settings, count: 1);
        var http = web.ClientFor(site, "client", user);
        await WaitUntilAsync(async () => (await http.GetAsync("/api/dashboards/client-stats")).StatusCode == HttpStatusCode.OK, "an answer through the restarted silo");
        Assert.Equal(3m, (await GetClientStatsAsync(web, site, user)).Spent);
    }

    [Fact]
    public async Task WriteIsVisibleWithinASecondOnATwoSiloCluster()
    {
        var settings = ClusterSettings();
        await using var silos = await StartActiveSilosAsync(settings, count: 2);
        await using var web = ClientWebHost(settings);
        using var metrics = new MetricsRecorder(web.Services);

        var site = await db.NewWebsiteAsync();
        var users = new List<long>();
        for (var i = 0; i < 6; i++)
        {
            users.Add(await db.NewUserAsync(site, "client"));
        }

        // Warm every user's grain (they spread over both silos) and the web host's near-cache (the second round is
        // answered from it), then write for each: the grains' pushes must keep the near-cached entries current.
        foreach (var user in users.Concat(users))
        {
            Assert.Equal(0m, (await GetClientStatsAsync(web, site, user)).Spent);
        }

        Assert.Equal(users.Count, metrics.Total("statscache.nearcache.hits"));

        var took = new List<TimeSpan>();
        foreach (var user in users)
        {
            await InsertOrderAsync(site, user, price: 5m);
            var written = Stopwatch.StartNew(); // from the commit, as ./bench.sh fresh measures
            await WaitUntilAsync(async () => (await GetClientStatsAsync(web, site, user)).Spent == 5m, "the write visible");
            took.Add(written.Elapsed);
        }

        var slowest = took.Max();
        output.WriteLine($"write to visible on the cluster: {string.Join(", ", took.Select(t => $"{t.TotalMilliseconds:F0}"))} ms");
        Assert.True(metrics.Total("statscache.nearcache.pushes") >= users.Count, "The grains pushed the new answers to the web host.");
        Assert.True(slowest < TimeSpan.FromSeconds(1), $"A write took {slowest.TotalMilliseconds:F0} ms to show.");
    }

    [Fact]
    public async Task KillingTheSiloThatStreamsTheSlotUnderWritesHandsTheFeedOverAndLosesNoWrite()
    {
        await using var cluster = await StartSlotClusterAsync();
        var (silos, http, holder, survivor) = (cluster.Silos, cluster.Http, cluster.Holder, cluster.Survivor);
        using var scrape = new HttpClient();
        var survivorBefore = await scrape.GetStringAsync(cluster.MetricsUrl(survivor));

        // The slot's silo is killed two seconds into the writes.
        await using var writers = OrderWriters.Start(this, cluster.Site, cluster.Clients);
        await Task.Delay(TimeSpan.FromSeconds(2));
        await silos.KillAsync(holder);
        var killed = Stopwatch.StartNew();
        await WaitUntilAsync(() => Task.FromResult(silos.OutputOf(survivor).Contains(HoldingMessage, StringComparison.Ordinal)), "the survivor taking the slot");
        var tookOver = killed.Elapsed;
        await Task.Delay(TimeSpan.FromSeconds(3));
        await writers.StopAsync();

        // Every write's effect shows: each client's dashboard equals a direct count (those whose grains died with the silo
        // reactivate from their stored snapshots, which refresh within a second).
        var visible = Stopwatch.StartNew();
        await Task.WhenAll(cluster.Clients.Select(async client =>
        {
            var expected = await ScalarAsync<decimal>("select coalesce(sum(price), 0) from orders where client_id = @c", ("c", client));
            await WaitUntilAsync(async () => (await GetClientStatsAsync(http[client], client)).Spent == expected, $"client {client}'s {expected} visible");
        }));

        // The survivor took the slot once and routed what was missed, never a refresh of everything (it had one when the
        // cluster's slot was created, with nothing cached yet).
        var survivorAfter = await scrape.GetStringAsync(cluster.MetricsUrl(survivor));
        output.WriteLine($"{writers.Written} orders written; the survivor took the slot {tookOver.TotalMilliseconds:F0} ms after the kill; " +
            $"all visible {visible.Elapsed.TotalMilliseconds:F0} ms after the writes stopped");
        Assert.Equal(MetricValue(survivorBefore, "statscache_changes_takeovers_total") + 1, MetricValue(survivorAfter, "statscache_changes_takeovers_total"));
        Assert.Equal(MetricValue(survivorBefore, "statscache_changes_total", "table=\"all\""), MetricValue(survivorAfter, "statscache_changes_total", "table=\"all\""));
        Assert.True(tookOver < TimeSpan.FromSeconds(5), $"The survivor took the slot {tookOver.TotalSeconds:F1} s after the kill.");
    }

    [Fact]
    public async Task HangingTheSiloThatStreamsTheSlotHandsTheFeedOverAfterItsSilenceAndTheWokenSiloNeverStreamsAgain()
    {
        var defaults = new ChangeFeedOptions();
        await using var cluster = await StartSlotClusterAsync();
        var (silos, http, holder, survivor, slot) = (cluster.Silos, cluster.Http, cluster.Holder, cluster.Survivor, cluster.Slot);
        using var scrape = new HttpClient();

        // An idle, healthy holder is left alone: its status updates keep its WAL sender's reply_time moving.
        var quiet = Stopwatch.StartNew();
        using (var look = new PeriodicTimer(TimeSpan.FromMilliseconds(200)))
        {
            while (quiet.Elapsed < 2 * defaults.HolderSilenceTimeout + defaults.SlotRetryDuration && await look.WaitForNextTickAsync())
            {
                Assert.DoesNotContain(SilentHolderMessage, silos.OutputOf(survivor), StringComparison.Ordinal);
                Assert.DoesNotContain(HoldingMessage, silos.OutputOf(survivor), StringComparison.Ordinal);
            }
        }

        var survivorBefore = await scrape.GetStringAsync(cluster.MetricsUrl(survivor));

        // The slot's silo is hung (SIGSTOP) once 400 orders are in.
        await using var writers = OrderWriters.Start(this, cluster.Site, cluster.Clients);
        await WaitUntilAsync(() => Task.FromResult(writers.Written >= 400), "400 orders written");
        await silos.SignalAsync(holder, "STOP");
        var stopped = Stopwatch.StartNew();
        try
        {
            await WaitUntilAsync(() => Task.FromResult(silos.OutputOf(survivor).Contains(HoldingMessage, StringComparison.Ordinal)), "the survivor taking the slot");
            var tookOver = stopped.Elapsed;
            var writtenAtTakeover = writers.Written;
            await WaitUntilAsync(() => Task.FromResult(writers.Written >= writtenAtTakeover + 200), "200 more orders after the takeover");
            await writers.StopAsync();

            // Every write's effect shows while the old holder is still hung (its grains reactivate on the survivor once the
            // cluster declares it dead; until then reads of them fail and are tried again).
            var visible = Stopwatch.StartNew();
            await Task.WhenAll(cluster.Clients.Select(async client =>
            {
                var expected = await ScalarAsync<decimal>("select coalesce(sum(price), 0) from orders where client_id = @c", ("c", client));
                await WaitUntilAsync(async () => await TrySpentAsync(http[client]) == expected, $"client {client}'s {expected} visible");
            }));

            var survivorAfter = await scrape.GetStringAsync(cluster.MetricsUrl(survivor));
            output.WriteLine($"{writers.Written} orders written; the survivor took the slot {tookOver.TotalMilliseconds:F0} ms after SIGSTOP of its holder " +
                $"(HolderSilenceTimeout {defaults.HolderSilenceTimeout.TotalSeconds} s); all visible {visible.Elapsed.TotalMilliseconds:F0} ms after the writes stopped");
            Assert.Contains($"The holder of replication slot {slot} sent nothing for", silos.OutputOf(survivor), StringComparison.Ordinal);
            Assert.Equal(MetricValue(survivorBefore, "statscache_changes_silent_holders_total") + 1, MetricValue(survivorAfter, "statscache_changes_silent_holders_total"));
            Assert.Equal(MetricValue(survivorBefore, "statscache_changes_takeovers_total") + 1, MetricValue(survivorAfter, "statscache_changes_takeovers_total"));
            Assert.Equal(MetricValue(survivorBefore, "statscache_changes_total", "table=\"all\""), MetricValue(survivorAfter, "statscache_changes_total", "table=\"all\""));

            // The last status update may precede the stop by one status interval, the survivor's first look at it follow it by
            // one retry; then a second for the stream to start and be seen holding the slot.
            var bound = defaults.HolderSilenceTimeout + defaults.SlotRetryDuration + ChangeFeedOptions.StatusUpdateInterval + defaults.SlotRetryDuration + TimeSpan.FromSeconds(1);
            Assert.True(tookOver < bound, $"The survivor took the slot {tookOver.TotalSeconds:F1} s after SIGSTOP of its holder (bound {bound.TotalSeconds} s).");
        }
        finally
        {
            await silos.SignalAsync(holder, "CONT");
        }

        // Woken, the old holder finds its stream ended by PostgreSQL and stands by (or, declared dead by the cluster while
        // hung, starts again as a new silo): it never streams again, and the survivor keeps the slot.
        var outputAtWake = silos.OutputOf(holder).Length;
        await WaitUntilAsync(
            () => Task.FromResult(silos.OutputOf(holder)[outputAtWake..] is var woken
                && (woken.Contains(StreamFailedMessage, StringComparison.Ordinal) || woken.Contains("rejoins as a new silo", StringComparison.Ordinal))),
            "the woken silo to find its stream ended");
        var afterWake = Stopwatch.StartNew();
        using (var look = new PeriodicTimer(TimeSpan.FromMilliseconds(200)))
        {
            while (afterWake.Elapsed < 3 * defaults.SlotRetryDuration && await look.WaitForNextTickAsync())
            {
                Assert.DoesNotContain(HoldingMessage, silos.OutputOf(holder)[outputAtWake..], StringComparison.Ordinal);
                Assert.Equal(1, await ScalarAsync<long>("select count(*) from pg_replication_slots where slot_name = @slot and active", ("slot", slot)));
            }
        }

        Assert.Equal(1, MetricValue(await scrape.GetStringAsync(cluster.MetricsUrl(survivor)), "statscache_changes_slot_held"));

        // Declared dead while hung, the woken silo starts again as a new silo in the same process (docs/cluster.md): its metrics
        // answer again once the new silo has started. Either way it holds nothing.
        Assert.False(silos.HasExited(holder), silos.OutputOf(holder));
        double? wokenHolds = null;
        await WaitUntilAsync(async () =>
        {
            try
            {
                wokenHolds = MetricValue(await scrape.GetStringAsync(cluster.MetricsUrl(holder)), "statscache_changes_slot_held");
                return true;
            }
            catch (HttpRequestException)
            {
                return false; // between its two silos
            }
        }, "the woken silo's metrics");
        Assert.Equal(0, wokenHolds);
        output.WriteLine(silos.OutputOf(holder).Contains("rejoins as a new silo", StringComparison.Ordinal)
            ? "the woken silo rejoined as a new silo (declared dead while hung)" : "the woken silo stands by");
    }

    /// <summary>
    /// Two silos, each exporting its metrics on a port of its own (so a survivor's can be read after its peer's fault), a client
    /// web host without the request limit, 30 clients whose grains are active (on either silo), and the silo streaming the slot.
    /// </summary>
    private async Task<SlotCluster> StartSlotClusterAsync()
    {
        var settings = ClusterSettings();
        var metricsPorts = new[] { StatsCacheFactory.FreePort(), StatsCacheFactory.FreePort() };
        var silos = await StartActiveSilosAsync(settings, [.. metricsPorts.Select(port => new Dictionary<string, string>(settings)
        {
            ["Observability:SiloMetricsPort"] = port.ToString(CultureInfo.InvariantCulture),
        })]);
        settings["StatsCache:RequestLimit:IsEnabled"] = "false";
        var web = ClientWebHost(settings);
        try
        {
            var site = await db.NewWebsiteAsync();
            var clients = new List<long>();
            for (var i = 0; i < 30; i++)
            {
                clients.Add(await db.NewUserAsync(site, "client"));
            }

            var http = clients.ToDictionary(c => c, c => web.ClientFor(site, "client", c));
            await Task.WhenAll(clients.Select(c => GetClientStatsAsync(http[c], c)));
            await WaitUntilAsync(() => Task.FromResult(HolderOf(silos) is not null), "a silo streaming the slot");
            return new SlotCluster(silos, web, metricsPorts, settings["StatsCache:Changes:SlotName"], site, clients, http, HolderOf(silos)!.Value);
        }
        catch
        {
            await web.DisposeAsync();
            await silos.DisposeAsync();
            throw;
        }
    }

    private sealed record SlotCluster(
        SiloGroup Silos, StatsCacheFactory Web, int[] MetricsPorts, string Slot, long Site, List<long> Clients, Dictionary<long, HttpClient> Http, int Holder)
        : IAsyncDisposable
    {
        public int Survivor => 1 - Holder;

        public string MetricsUrl(int silo) => $"http://127.0.0.1:{MetricsPorts[silo]}/metrics";

        public async ValueTask DisposeAsync()
        {
            await Web.DisposeAsync();
            await Silos.DisposeAsync();
        }
    }

    /// <summary>200 orders a second of price 1 over the clients, from four writers, until stopped.</summary>
    private sealed class OrderWriters : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private List<Task> _writers = [];
        private int _written;

        public int Written => Volatile.Read(ref _written);

        public static OrderWriters Start(ClusterTests tests, long site, List<long> clients)
        {
            var writers = new OrderWriters();
            writers._writers = [.. Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
            {
                using var pace = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
                for (var n = w; !writers._stop.IsCancellationRequested; n += 4)
                {
                    await tests.InsertOrderAsync(site, clients[n % clients.Count], price: 1m);
                    Interlocked.Increment(ref writers._written);
                    await pace.WaitForNextTickAsync();
                }
            }))];
            return writers;
        }

        public async Task StopAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_writers);
        }

        public async ValueTask DisposeAsync()
        {
            await StopAsync();
            _stop.Dispose();
        }
    }

    // A client's total spent, or null while its dashboard cannot be read (its silo hung and not yet declared dead).
    private static async Task<decimal?> TrySpentAsync(HttpClient http)
    {
        var response = await http.GetAsync("/api/dashboards/client-stats");
        return response.StatusCode == HttpStatusCode.OK
            ? (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("data").GetProperty("summary").GetProperty("total_spent").GetDecimal()
            : null;
    }

    private const string SilentHolderMessage = "sent nothing for";

    private const string StreamFailedMessage = "The change feed's replication stream failed";

    [Fact]
    public async Task ASiloDeclaredDeadRejoinsAsANewSiloWithoutItsProcessEnding()
    {
        // The first silo exports its metrics, so its rejoin count and its new generation's reads can be read.
        var settings = ClusterSettings();
        var clusterId = settings["Orleans:ClusterId"];
        var metricsPort = StatsCacheFactory.FreePort();
        await using var silos = await StartActiveSilosAsync(settings, [new Dictionary<string, string>(settings)
        {
            ["Observability:SiloMetricsPort"] = metricsPort.ToString(CultureInfo.InvariantCulture),
            ["Logging:Console:TimestampFormat"] = "HH:mm:ss.fff ", // its output, in a failure's message, shows where the time went
        }, settings]);
        var victim = silos[0];
        await using var web = ClientWebHost(settings);
        var site = await db.NewWebsiteAsync();
        var users = new List<(long Id, decimal Spent)>();
        for (var i = 1; i <= 30; i++)
        {
            var user = await db.NewUserAsync(site, "client");
            await InsertOrderAsync(site, user, price: i + 0.5m);
            users.Add((user, i + 0.5m));
        }

        await Task.WhenAll(users.Select(async u => Assert.Equal(u.Spent, (await GetClientStatsAsync(web, site, u.Id)).Spent)));
        var firstGeneration = await ScalarAsync<int>(
            "select Generation from OrleansMembershipTable where DeploymentId = @cluster and Port = @port and Status = 3",
            ("cluster", clusterId), ("port", victim.SiloPort));

        // The wrong side of a partition: SIGSTOP until the other silo has voted it dead (probes every 2 s, two missed), then heal.
        await silos.SignalAsync(0, "STOP");
        try
        {
            await WaitUntilAsync(
                async () => await SiloStatusAsync(clusterId, victim.SiloPort, firstGeneration) == 6, "the other silo declaring the stopped one dead");
        }
        finally
        {
            await silos.SignalAsync(0, "CONT");
        }

        var healed = Stopwatch.StartNew();
        try
        {
            await WaitUntilAsync(
                async () => await ScalarAsync<long>(
                    "select count(*) from OrleansMembershipTable where DeploymentId = @cluster and Port = @port and Generation > @generation and Status = 3",
                    ("cluster", clusterId), ("port", victim.SiloPort), ("generation", firstGeneration)) == 1,
                "the same address and port active again with a newer generation");
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message} The silo's output:{Environment.NewLine}{victim.Output}", e);
        }

        var rejoined = healed.Elapsed;
        Assert.False(victim.HasExited, $"The silo process exited:{Environment.NewLine}{victim.Output}");
        await WaitUntilAsync(async () => await ActiveSilosAsync(clusterId) == 2, "two silos active");

        // Every user reads right through the cluster; new users' grains are placed on either silo, the rejoined one too.
        await Task.WhenAll(users.Select(async u => Assert.Equal(u.Spent, (await GetClientStatsAsync(web, site, u.Id)).Spent)));
        using var scrape = new HttpClient();
        var newUsers = 0;
        await WaitUntilAsync(async () =>
        {
            var user = await db.NewUserAsync(site, "client");
            newUsers++;
            Assert.Equal(0m, (await GetClientStatsAsync(web, site, user)).Spent);
            return MetricValue(await scrape.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"), "statscache_reads_total") > 0;
        }, "a new user's grain on the rejoined silo");

        var metrics = await scrape.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
        output.WriteLine($"declared dead to active again: {rejoined.TotalMilliseconds:F0} ms after the heal; the {newUsers}th new user's grain was on the rejoined silo");
        Assert.Equal(1, MetricValue(metrics, "statscache_silo_rejoins_total"));
        Assert.True(rejoined < TimeSpan.FromSeconds(15), $"The silo was active again {rejoined.TotalSeconds:F1} s after the heal:{Environment.NewLine}{victim.Output}");

        Assert.Equal(0, await victim.StopAsync());
        var log = victim.Output;
        output.WriteLine(string.Join(Environment.NewLine, log.Split('\n').Where(line => line.Contains("stopped in", StringComparison.Ordinal))));
        Assert.Single(log.Split('\n'), line => line.Contains(RejoiningFatalErrorHandler.DeclaredDeadMessage, StringComparison.Ordinal));
        Assert.DoesNotContain("FailFast", log, StringComparison.Ordinal);
        Assert.DoesNotContain("FATAL EXCEPTION", log, StringComparison.Ordinal);
    }

    private async Task<int?> SiloStatusAsync(string clusterId, int port, int generation)
    {
        await using var command = db.DataSource.CreateCommand(
            "select Status from OrleansMembershipTable where DeploymentId = @cluster and Port = @port and Generation = @generation");
        command.Parameters.AddWithValue("cluster", clusterId);
        command.Parameters.AddWithValue("port", port);
        command.Parameters.AddWithValue("generation", generation);
        return (int?)await command.ExecuteScalarAsync();
    }

    private const string HoldingMessage = "This silo streams replication slot";

    private static int? HolderOf(SiloGroup silos) =>
        Enumerable.Range(0, 2).Where(i => silos.OutputOf(i).Contains(HoldingMessage, StringComparison.Ordinal)).Select(i => (int?)i).FirstOrDefault();

    // The sum of a Prometheus text metric's samples (whose labels contain the given one), 0 when it has none.
    private static double MetricValue(string text, string name, string? label = null) => text.Split('\n')
        .Where(line => line.StartsWith(name, StringComparison.Ordinal) && (line.Length == name.Length || line[name.Length] is '{' or ' '))
        .Where(line => label is null || line.Contains(label, StringComparison.Ordinal))
        .Sum(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));

    [Fact]
    public async Task OrleansSetupIsIdempotentAndHoldsEveryStatementTheProvidersRead()
    {
        // The fixture applied it once already; a second run (and a third, concurrently) must be harmless.
        await Task.WhenAll(DatabaseSetup.ApplySchemaAsync(db.DataSource), DatabaseSetup.ApplySchemaAsync(db.DataSource));

        string[] expected =
        [
            "CleanupDefunctSiloEntriesKey", "CleanupDefunctSiloEntryKey", "ClearStorageKey", "DeleteMembershipTableEntriesKey",
            "DeleteStorageKey", "GatewaysQueryKey", "InsertMembershipKey", "InsertMembershipVersionKey", "MembershipReadAllKey",
            "MembershipReadRowKey", "ReadFromStorageKey", "UpdateIAmAlivetimeKey", "UpdateMembershipKey", "WriteToStorageKey",
        ];
        await using var command = db.DataSource.CreateCommand("select QueryKey from OrleansQuery order by QueryKey");
        await using var reader = await command.ExecuteReaderAsync();
        var keys = new List<string>();
        while (await reader.ReadAsync())
        {
            keys.Add(reader.GetString(0));
        }

        Assert.Equal(expected.Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
    }

    private sealed record ClientStats(string AsOf, decimal Spent, bool Stale);

    /// <summary>AdoNet membership and storage on a cluster of this test's own, with a replication slot of its own.</summary>
    private static Dictionary<string, string> ClusterSettings() => new()
    {
        ["Orleans:Membership"] = "AdoNet",
        ["Orleans:Storage"] = "AdoNet",
        ["Orleans:ClusterId"] = $"test-{Guid.NewGuid():N}",
        ["StatsCache:Changes:SlotName"] = ReplicationSlots.NewName(),
    };

    private static StatsCacheFactory ClientWebHost(Dictionary<string, string> settings)
    {
        var factory = new StatsCacheFactory();
        factory.Settings["Orleans:Mode"] = "Client";
        foreach (var (key, value) in settings)
        {
            factory.Settings[key] = value;
        }

        return factory;
    }

    private static Task<ClientStats> GetClientStatsAsync(StatsCacheFactory web, long site, long user) =>
        GetClientStatsAsync(web.ClientFor(site, "client", user), user);

    private static async Task<ClientStats> GetClientStatsAsync(HttpClient http, long user)
    {
        var response = await http.GetAsync("/api/dashboards/client-stats");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(user.ToString(CultureInfo.InvariantCulture), body.GetProperty("user").ToString());
        return new ClientStats(
            body.GetProperty("asOf").GetString()!,
            body.GetProperty("data").GetProperty("summary").GetProperty("total_spent").GetDecimal(),
            body.GetProperty("stale").GetBoolean());
    }

    private Task InsertOrderAsync(long site, long client, decimal price) =>
        db.ExecuteAsync(
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, 'completed', @p, 2, true, now(), now() + interval '1 day')",
            ("w", site), ("c", client), ("p", price));

    /// <summary>Starts the silos and waits until the membership table shows them all active.</summary>
    private Task<SiloGroup> StartActiveSilosAsync(Dictionary<string, string> settings, int count) =>
        StartActiveSilosAsync(settings, Enumerable.Repeat(settings, count).ToList());

    private async Task<SiloGroup> StartActiveSilosAsync(Dictionary<string, string> settings, IReadOnlyList<Dictionary<string, string>> silosSettings)
    {
        var count = silosSettings.Count;
        var silos = new SiloGroup();
        try
        {
            await silos.StartAsync(db.ConnectionString, silosSettings);
            await WaitUntilAsync(async () => await ActiveSilosAsync(settings["Orleans:ClusterId"]) == count, $"{count} silos active in the membership table");
            return silos;
        }
        catch
        {
            await silos.DisposeAsync();
            throw;
        }
    }

    private Task<long> ActiveSilosAsync(string clusterId) =>
        ScalarAsync<long>(
            "select count(*) from OrleansMembershipTable where DeploymentId = @cluster and Status = 3", ("cluster", clusterId));

    private Task<long> StoredSnapshotsAsync(long site) =>
        ScalarAsync<long>(
            "select count(*) from OrleansStorage where GrainIdExtensionString like @prefix and PayloadBinary is not null",
            ("prefix", $"{site}/client/%"));

    private async Task<T> ScalarAsync<T>(string sql, params (string Name, object Value)[] parameters)
    {
        await using var command = db.DataSource.CreateCommand(sql);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var started = Stopwatch.StartNew();
        // Fine enough that the time to visible is measured to within 20 ms, as ./bench.sh fresh probes.
        using var poll = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
        while (!await condition())
        {
            if (started.Elapsed > Deadline)
            {
                throw new TimeoutException($"Waited {Deadline.TotalSeconds} s for {what}.");
            }

            await poll.WaitForNextTickAsync();
        }
    }

    /// <summary>Silo processes of one cluster, started together and stopped together; their replication slot is dropped at the end.</summary>
    internal sealed class SiloGroup : IAsyncDisposable
    {
        private readonly List<ServiceProcess> _silos = [];
        private readonly HashSet<(string ConnectionString, string Slot)> _slots = [];

        public Task StartAsync(string connectionString, IReadOnlyDictionary<string, string> settings, int count) =>
            StartAsync(connectionString, Enumerable.Repeat(settings, count).ToList());

        public async Task StartAsync(string connectionString, IReadOnlyList<IReadOnlyDictionary<string, string>> silosSettings)
        {
            foreach (var settings in silosSettings)
            {
                _slots.Add((connectionString, settings["StatsCache:Changes:SlotName"]));
            }

            _silos.AddRange(await Task.WhenAll(silosSettings.Select(settings => ServiceProcess.StartSiloAsync(connectionString, settings))));
        }

        public Task KillAsync(int index) => _silos[index].KillAsync();

        public Task SignalAsync(int index, string signal) => _silos[index].SignalAsync(signal);

        public string OutputOf(int index) => _silos[index].Output;

        public bool HasExited(int index) => _silos[index].HasExited;
        public ServiceProcess this[int index] => _silos[index];

        public Task<int[]> StopAllAsync() => Task.WhenAll(_silos.Select(s => s.StopAsync()));

        public async ValueTask DisposeAsync()
        {
            foreach (var silo in _silos)
            {
                await silo.DisposeAsync();
            }

            foreach (var (connectionString, slot) in _slots)
            {
                await ReplicationSlots.DropAsync(connectionString, slot);
            }
        }
    }
}
