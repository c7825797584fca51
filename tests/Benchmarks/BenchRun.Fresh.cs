using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Npgsql;
using NpgsqlTypes;
using StatsCache.WebHost.Auth;

namespace StatsCache.Benchmarks;

public sealed partial class BenchRun
{
    /// <summary>The site-scoped view the fresh scenario's admins keep open: it reads every order of its site.</summary>
    private const string AdminView = "admin-overview";

    /// <summary>Every round draws the same clients in the same order, so the rounds compare like with like.</summary>
    private const int FreshSeed = 7;

    // Probes poll this often: fine against a goal of 1 s, and every poll is a cache hit.
    private static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(20);

    // A write still not visible after this has missed the goal by far: it is polled less often, so the
    // TTL-only round's unseen writes do not flood the host.
    private static readonly TimeSpan ProbeSlowAfter = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan ProbeSlowInterval = TimeSpan.FromMilliseconds(250);

    // A write not visible this long after its commit is reported as not seen (TTL only: client-stats' TTL is 5 minutes).
    private static readonly TimeSpan VisibleWithin = TimeSpan.FromSeconds(5);

    // An answer marked fresh (stale: false) may miss a write committed less than this before it was received; one that
    // misses an older write is counted (FreshnessCheck). What a change may take with loads on a replica: the change
    // debounce (250 ms), then the fence's wait for the replica (ReplicaWaitTimeout, 300 ms, the hosts' default) before the
    // load goes to the primary, then a load: 250 ms for it and for the change feed's delivery (client-stats and
    // admin-overview load in about 10 ms alone, but on two shared cores under this load they queue).
    private static readonly TimeSpan ChangeDebounce = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan ReplicaWaitTimeout = TimeSpan.FromMilliseconds(300);
    private static readonly TimeSpan LoadAllowance = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan FreshMissAfter = ChangeDebounce + ReplicaWaitTimeout + LoadAllowance;

    // An open dashboard page polls its view about once a second; the readers are spread over the second in slices.
    private static readonly TimeSpan ReaderPollInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan ReaderTick = TimeSpan.FromMilliseconds(50);

    // ---------------------------------------------------------------- fresh
    /// <summary>
    /// A steady write load (orders inserted at a fixed rate over many clients) while the open dashboards poll,
    /// co-hosted with the change feed on, the same with TTL refreshes only, and the two-silo cluster with the
    /// feed on, each round on hosts of its own. Reports write-to-visible latency (client-stats of probed writes,
    /// admin-overview of every write) and the loads PostgreSQL ran per second (pg_stat_statements), next to
    /// the write rate achieved. With a read replica (issue 24) three more rounds: co-hosted and the cluster with their
    /// loads on the replica, reporting the share of loads the primary ran, and co-hosted with the replica's replay paused
    /// for the whole round, reporting the answers marked fresh that miss a write older than <see cref="FreshMissAfter"/>.
    /// </summary>
    public async Task FreshAsync()
    {
        // Hosts of earlier scenarios hold entries of these very clients, which would reload on these writes
        // too (and be counted here), and they would share the cores.
        await StopAllHostsAsync();
        if (_env.FreshClients > Clients.Count || _env.FreshReaders > _env.FreshClients
            || _env.FreshProbesPerSecond < 1 || _env.FreshProbesPerSecond > _env.FreshWritesPerSecond)
        {
            throw new InvalidOperationException(
                $"Fresh needs readers ≤ clients ≤ {Clients.Count:N0} and 1 ≤ probes/s ≤ writes/s (got {_env.FreshReaders}, {_env.FreshClients}, {_env.FreshProbesPerSecond}, {_env.FreshWritesPerSecond}).");
        }

        var clients = Clients.Take(_env.FreshClients).ToList();
        var admins = await AdminsAsync(clients.Select(c => c.SiteId).Distinct());
        var open = $"{_env.FreshReaders:N0} {Driver.HitView} + {admins.Count} {AdminView}";
        Console.WriteLine($"   {_env.FreshWritesPerSecond} orders/s for {_env.FreshSeconds} s over {clients.Count:N0} clients of sites "
            + $"{string.Join(", ", admins.Select(a => a.SiteId))}; open dashboards: {_env.FreshReaders:N0} clients' {Driver.HitView} "
            + $"every {ReaderPollInterval.TotalSeconds:0} s, each site's admin's {AdminView} every {ProbeInterval.TotalMilliseconds:0} ms");

        var rounds = new List<(string Name, bool ChangeFeed, FreshReplica Replica, Func<Task<HttpHost>> StartAsync)>
        {
            ("co-hosted, change feed on", true, FreshReplica.None, () => StartCoHostedAsync("fresh-feed", new Dictionary<string, string>())),
            ("co-hosted, TTL only", false, FreshReplica.None,
                () => StartCoHostedAsync("fresh-ttl", new Dictionary<string, string> { ["StatsCache__Changes__IsEnabled"] = "false" })),
            // Two silos, each listening to the feed and told only about the grains it holds; reads through a web host.
            ("cluster of 2 silos, change feed on", true, FreshReplica.None, async () => (await ClusterAsync(webHosts: 1, benchClients: 0)).WebHosts[0]),
        };
        if (ReplicaOverrides() is { } replica)
        {
            rounds.Add(("co-hosted, change feed on, loads on the replica", true, FreshReplica.KeepsUp, () => StartCoHostedAsync("fresh-replica", replica)));
            rounds.Add(("cluster of 2 silos, change feed on, loads on the replica", true, FreshReplica.KeepsUp,
                async () => (await ClusterAsync(webHosts: 1, benchClients: 0, replica)).WebHosts[0]));
            rounds.Add(("co-hosted, loads on the replica, replay paused", true, FreshReplica.Paused,
                () => StartCoHostedAsync("fresh-replica-paused", replica)));
        }
        else
        {
            Console.WriteLine("   no read replica (BENCH_REPLICA): the rounds with loads on it are left out");
        }

        var details = new JsonArray();
        foreach (var (round, changeFeed, onReplica, startAsync) in rounds)
        {
            FreshResult result;
            try
            {
                result = await FreshRoundAsync(await startAsync(), clients, admins, onReplica);
            }
            finally
            {
                // Stopped before the next round starts, so the rounds do not share the cores.
                await StopAllHostsAsync();
                if (onReplica == FreshReplica.Paused)
                {
                    await ResumeReplayAsync();
                }
            }

            details.Add(AddFreshRows(round, changeFeed, open, result));
        }

        _report.Detail("fresh", new JsonObject
        {
            ["targetWritesPerSecond"] = _env.FreshWritesPerSecond,
            ["seconds"] = _env.FreshSeconds,
            ["clients"] = clients.Count,
            ["sites"] = new JsonArray([.. admins.Select(a => (JsonNode)a.SiteId)]),
            ["readers"] = _env.FreshReaders,
            ["readerPollSeconds"] = ReaderPollInterval.TotalSeconds,
            ["adminPollMs"] = ProbeInterval.TotalMilliseconds,
            ["probesPerSecond"] = _env.FreshProbesPerSecond,
            ["visibleWithinSeconds"] = VisibleWithin.TotalSeconds,
            ["freshMissAfterMs"] = FreshMissAfter.TotalMilliseconds,
            ["rounds"] = details,
        });
    }

    /// <summary>Whether a round's loads run on the replica, and whether its replay is paused for the round.</summary>
    private enum FreshReplica
    {
        None,
        KeepsUp,
        Paused,
    }

    /// <summary>
    /// One round's figures; latencies in seconds from commit to the first answer showing the write, +∞ when none did within
    /// <see cref="VisibleWithin"/>. Loads by view on the primary, and on the replica (null: the round does not use it); the
    /// host's source metrics over the writing window (null: its loads run in other processes, or on the primary alone).
    /// </summary>
    private sealed record FreshResult(
        int Writes, double WriteSeconds, List<double> ClientLatencies, List<double> AdminLatencies,
        Dictionary<string, long> Loads, Dictionary<string, long>? ReplicaLoads, Dictionary<string, double>? SourceMetrics,
        FreshnessCheck Check, FreshReplica Replica, long Reads, long FailedReads, double Seconds);

    /// <summary>HTTP reads of one round, by every reader, prober and admin.</summary>
    private sealed class FreshReads
    {
        public long Count;
        public long Failed;
    }

    private async Task<FreshResult> FreshRoundAsync(HttpHost host, List<Caller> clients, List<Caller> admins, FreshReplica onReplica)
    {
        var http = ClientFor(host);
        var adminTokens = admins.Select(TokenFor).ToList();
        if (host.Slot is { } slot)
        {
            await WaitForSlotStreamedAsync(host.Process, slot);
        }

        // Paused for the whole round, first loads included (the caller resumes it): the replica answers, its data stays.
        if (onReplica == FreshReplica.Paused)
        {
            await PauseReplayAsync();
        }

        // The open dashboards are read once first, so their entries exist before the writes, as on a live site.
        await WarmAsync(host, $"/api/dashboards/{Driver.HitView}", _env.FreshReaders, _env.FreshReaders);
        foreach (var token in adminTokens)
        {
            _ = await ReadViewAsync(http, AdminView, token, new FreshReads()) ?? throw new InvalidOperationException($"{host.Name} did not answer {AdminView}.");
        }

        var ordersBefore = await OrdersBySiteAsync(admins.Select(a => a.SiteId));
        var pending = admins.ToDictionary(a => a.SiteId, _ => new ConcurrentQueue<(long Sequence, long CommittedAt)>());
        var check = new FreshnessCheck(admins.Select(a => a.SiteId));
        await ResetDatabaseLoadsAsync();
        if (onReplica != FreshReplica.None)
        {
            await ResetReplicaLoadsAsync();
        }

        var metricsBefore = onReplica != FreshReplica.None ? await SourceMetricsAsync(host) : null;

        // Pollers stop once every write they watch is seen, or VisibleWithin after the last write.
        using var tail = new CancellationTokenSource();
        var reads = new FreshReads();
        var started = Stopwatch.GetTimestamp();
        var writer = WriteOrdersAsync(clients, pending, _env.FreshProbesPerSecond, _env.FreshReaders,
            (client, orderId, committedAt) => ProbeAsync(http, Tokens[client], client, orderId, committedAt, reads, check), check);
        var readers = PollReadersAsync(http, reads, writer, check);
        var adminPolls = admins.Select((a, i) => PollAdminAsync(
            http, adminTokens[i], a.SiteId, ordersBefore[a.SiteId], pending[a.SiteId], writer, tail.Token, reads, check)).ToList();

        var (writes, writeSeconds, probes) = await writer;
        tail.CancelAfter(VisibleWithin);
        // Loads over the writing window, read as it ends. Reloads trail their writes by the debounce (250 ms),
        // so the window holds those of all but its last quarter second of writes: under 1 % short of a steady state.
        var loads = new Dictionary<string, long>();
        var replicaLoads = onReplica != FreshReplica.None ? new Dictionary<string, long>() : null;
        foreach (var view in Catalog.Views)
        {
            loads[view.Name] = await DatabaseLoadsAsync(view);
            if (replicaLoads is not null)
            {
                replicaLoads[view.Name] = await DatabaseLoadsAsync(view, Replica);
            }
        }

        var sourceMetrics = metricsBefore is not null ? Delta(metricsBefore, await SourceMetricsAsync(host)) : null;
        await readers;
        var clientLatencies = (await Task.WhenAll(probes)).ToList();
        var adminLatencies = (await Task.WhenAll(adminPolls)).SelectMany(l => l).ToList();
        return new FreshResult(writes, writeSeconds, clientLatencies, adminLatencies, loads, replicaLoads,
            sourceMetrics is { Count: > 0 } ? sourceMetrics : null, check, onReplica, reads.Count, reads.Failed,
            Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>
    /// Inserts <see cref="BenchEnvironment.FreshSeconds"/> of orders at <see cref="BenchEnvironment.FreshWritesPerSecond"/>
    /// over <paramref name="clients"/>, and starts a probe for about <paramref name="probesPerSecond"/> of them a second
    /// (writes to the first <paramref name="probed"/> clients, those with their dashboard open). Every write is told to
    /// <paramref name="check"/>, if any.
    /// </summary>
    private async Task<(int Writes, double Seconds, List<Task<double>> Probes)> WriteOrdersAsync(
        List<Caller> clients, Dictionary<long, ConcurrentQueue<(long Sequence, long CommittedAt)>> pending,
        int probesPerSecond, int probed, Func<int, long, long, Task<double>> probe, FreshnessCheck? check = null)
    {
        var rate = _env.FreshWritesPerSecond;
        var total = rate * _env.FreshSeconds;
        var probeEvery = rate / probesPerSecond;
        var random = new Random(FreshSeed);
        var sequences = pending.Keys.ToDictionary(site => site, _ => 0L);
        var probes = new List<Task<double>>();

        // A new order as the platform creates one: pending, no writer yet, so it concerns its client's views and its site's.
        await using var connection = await _db.OpenConnectionAsync();
        await using var insert = new NpgsqlCommand(
            "insert into orders (website_id, client_id, status, price, pages, deadline) "
            + "values (@site, @client, 'pending', @price, @pages, now() + interval '7 days') returning id", connection);
        var site = new NpgsqlParameter<long>("site", NpgsqlDbType.Bigint);
        var client = new NpgsqlParameter<long>("client", NpgsqlDbType.Bigint);
        var price = new NpgsqlParameter<decimal>("price", NpgsqlDbType.Numeric);
        var pages = new NpgsqlParameter<int>("pages", NpgsqlDbType.Integer);
        insert.Parameters.AddRange(new NpgsqlParameter[] { site, client, price, pages });
        await insert.PrepareAsync();

        // One connection, one insert (its own transaction) at a time: orders commit in the order they are
        // counted, which the admin view's check (the site's order count) relies on. Each tick catches up to
        // the rate, so a slow insert or a late tick does not lower it.
        var started = Stopwatch.StartNew();
        var written = 0;
        var nextProbe = 0;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1.0 / rate));
        while (written < total && await timer.WaitForNextTickAsync())
        {
            var due = Math.Min(total, (int)(started.Elapsed.TotalSeconds * rate) + 1);
            for (; written < due; written++)
            {
                var index = random.Next(clients.Count);
                var caller = clients[index];
                site.TypedValue = caller.SiteId;
                client.TypedValue = caller.UserId;
                pages.TypedValue = 1 + random.Next(20);
                price.TypedValue = pages.TypedValue * 15m;
                var orderId = (long)(await insert.ExecuteScalarAsync())!;
                var committedAt = Stopwatch.GetTimestamp();
                check?.Written(index, caller.SiteId, orderId, committedAt);
                pending[caller.SiteId].Enqueue((++sequences[caller.SiteId], committedAt));
                if (written >= nextProbe && index < probed)
                {
                    probes.Add(probe(index, orderId, committedAt));
                    nextProbe += probeEvery;
                }
            }
        }

        return (written, started.Elapsed.TotalSeconds, probes);
    }

    /// <summary>Polls a client's view until it shows the order (then its newest: last_order_id reaches it); seconds from commit, +∞ if not within <see cref="VisibleWithin"/>.</summary>
    private static async Task<double> ProbeAsync(
        HttpClient http, string token, int client, long orderId, long committedAt, FreshReads reads, FreshnessCheck check)
    {
        while (true)
        {
            var data = await ReadViewAsync(http, Driver.HitView, token, reads, (data, stale, at) => check.ClientAnswer(client, data, stale, at));
            var age = Stopwatch.GetElapsedTime(committedAt);
            if (data?.GetProperty("summary").GetProperty("last_order_id") is { ValueKind: JsonValueKind.Number } last && last.GetInt64() >= orderId)
            {
                return age.TotalSeconds;
            }

            if (age >= VisibleWithin)
            {
                return double.PositiveInfinity;
            }

            await Task.Delay(age < ProbeSlowAfter ? ProbeInterval : ProbeSlowInterval);
        }
    }

    /// <summary>Every open client dashboard reads its view once per <see cref="ReaderPollInterval"/>, spread over it, until the writes end.</summary>
    private async Task PollReadersAsync(HttpClient http, FreshReads reads, Task writes, FreshnessCheck check)
    {
        var slices = (int)(ReaderPollInterval / ReaderTick);
        using var timer = new PeriodicTimer(ReaderTick);
        for (var tick = 0; !writes.IsCompleted && await timer.WaitForNextTickAsync(); tick++)
        {
            var slice = tick % slices;
            await Task.WhenAll(Enumerable.Range(0, _env.FreshReaders).Where(i => i % slices == slice)
                .Select(i => ReadViewAsync(http, Driver.HitView, Tokens[i], reads, (data, stale, at) => check.ClientAnswer(i, data, stale, at))));
        }
    }

    /// <summary>
    /// A site's admin polls the admin view: a write is visible once the site's order count includes it (the writer
    /// commits one at a time, in sequence). Seconds from commit for every write of the site, +∞ for those not seen.
    /// </summary>
    private static async Task<List<double>> PollAdminAsync(
        HttpClient http, string token, long site, long ordersBefore, ConcurrentQueue<(long Sequence, long CommittedAt)> pending,
        Task writes, CancellationToken tail, FreshReads reads, FreshnessCheck check)
    {
        var latencies = new List<double>();
        while (!tail.IsCancellationRequested && !(writes.IsCompleted && pending.IsEmpty))
        {
            var data = await ReadViewAsync(http, AdminView, token, reads, (data, stale, at) => check.AdminAnswer(site, ordersBefore, data, stale, at));
            var seenAt = Stopwatch.GetTimestamp();
            var total = data?.GetProperty("orders_by_status").GetProperty("total").GetInt64();
            while (total is not null && pending.TryPeek(out var write) && ordersBefore + write.Sequence <= total)
            {
                pending.TryDequeue(out _);
                latencies.Add(Stopwatch.GetElapsedTime(write.CommittedAt, seenAt).TotalSeconds);
            }

            await Task.Delay(ProbeInterval);
        }

        latencies.AddRange(pending.Select(_ => double.PositiveInfinity));
        return latencies;
    }

    /// <summary>
    /// One read of a view as a dashboard makes it: its data, or null (counted as failed) when the answer is not 200; an answer
    /// is also handed to <paramref name="answered"/> with its stale flag and when it was received.
    /// </summary>
    private static async Task<JsonElement?> ReadViewAsync(
        HttpClient http, string view, string token, FreshReads reads, Action<JsonElement, bool, long>? answered = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/dashboards/{view}");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await http.SendAsync(request);
        var receivedAt = Stopwatch.GetTimestamp();
        Interlocked.Increment(ref reads.Count);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            Interlocked.Increment(ref reads.Failed);
            return null;
        }

        using var json = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync());
        var data = json.RootElement.GetProperty("data").Clone();
        answered?.Invoke(data, json.RootElement.GetProperty("stale").GetBoolean(), receivedAt);
        return data;
    }

    /// <summary>The first admin of each site.</summary>
    private async Task<List<Caller>> AdminsAsync(IEnumerable<long> sites)
    {
        await using var command = _db.CreateCommand(
            "select website_id, min(id) from users where role = 'admin' and website_id = any(@sites) group by website_id order by website_id");
        command.Parameters.AddWithValue("sites", sites.ToArray());
        await using var reader = await command.ExecuteReaderAsync();
        var admins = new List<Caller>();
        while (await reader.ReadAsync())
        {
            admins.Add(new Caller(reader.GetInt64(0), "admin", reader.GetInt64(1)));
        }

        return admins;
    }

    private async Task<Dictionary<long, long>> OrdersBySiteAsync(IEnumerable<long> sites)
    {
        await using var command = _db.CreateCommand("select website_id, count(*) from orders where website_id = any(@sites) group by website_id");
        command.Parameters.AddWithValue("sites", sites.ToArray());
        await using var reader = await command.ExecuteReaderAsync();
        var orders = new Dictionary<long, long>();
        while (await reader.ReadAsync())
        {
            orders[reader.GetInt64(0)] = reader.GetInt64(1);
        }

        return orders;
    }

    /// <summary>The round's rows (goals only when the change feed is on: TTL only is the comparison), and its JSON detail.</summary>
    private JsonObject AddFreshRows(string round, bool goal, string open, FreshResult result)
    {
        var detail = new JsonObject
        {
            ["round"] = round,
            ["changeFeed"] = goal,
            ["writes"] = result.Writes,
            ["writesPerSecond"] = Math.Round(result.Writes / result.WriteSeconds, 1),
            ["seconds"] = Math.Round(result.Seconds, 1),
            ["readsPerSecond"] = Math.Round(result.Reads / result.Seconds),
            ["failedReads"] = result.FailedReads,
        };
        foreach (var (view, latencies, sample) in new[] { (Driver.HitView, result.ClientLatencies, "probed writes"), (AdminView, result.AdminLatencies, "every write") })
        {
            var (p50, p99) = (Percentile(latencies, 50), Percentile(latencies, 99));
            var seen = latencies.Where(double.IsFinite).ToList();
            _report.Add(new ReportRow("fresh", $"{round}: {view} write-to-visible p50 / p99 ({sample})", goal ? "p99 < 1 s" : "—",
                $"{Latency(p50)} / {Latency(p99)}, seen {seen.Count:N0} of {latencies.Count:N0}", goal ? p99 < 1 : null,
                double.IsFinite(p99) ? p99 : null));
            detail[view] = new JsonObject
            {
                ["writes"] = latencies.Count,
                ["seen"] = seen.Count,
                ["p50Ms"] = double.IsFinite(p50) ? Math.Round(p50 * 1000) : null,
                ["p99Ms"] = double.IsFinite(p99) ? Math.Round(p99 * 1000) : null,
                ["maxSeenMs"] = seen.Count > 0 ? Math.Round(seen.Max() * 1000) : null,
            };
        }

        // Loads wherever they ran: the primary, and the replica in the rounds that use it.
        var allLoads = result.Loads.ToDictionary(l => l.Key, l => l.Value + (result.ReplicaLoads?.GetValueOrDefault(l.Key) ?? 0));
        var writesPerSecond = result.Writes / result.WriteSeconds;
        var loadsPerSecond = allLoads.Values.Sum() / result.WriteSeconds;
        var byView = string.Join(", ", allLoads.Where(l => l.Value > 0).OrderByDescending(l => l.Value)
            .Select(l => $"{l.Key} {l.Value / result.WriteSeconds:F1}"));
        var failed = result.FailedReads > 0 ? $", {result.FailedReads:N0} reads failed" : "";
        _report.Add(new ReportRow("fresh", $"{round}: source loads/s, open dashboards: {open}", goal ? "< write rate" : "—",
            $"{loadsPerSecond:F1} at {writesPerSecond:F1} writes/s{(byView.Length > 0 ? $" ({byView})" : "")}{failed}",
            goal ? loadsPerSecond < writesPerSecond : null, loadsPerSecond));
        detail["loads"] = new JsonObject([.. result.Loads.Select(l => KeyValuePair.Create(l.Key, (JsonNode?)l.Value))]);
        detail["loadsPerSecond"] = Math.Round(loadsPerSecond, 1);
        if (result.ReplicaLoads is { } replicaLoads)
        {
            AddReplicaRows(round, result, replicaLoads, detail);
        }

        detail["freshAnswers"] = result.Check.ToJson();
        return detail;
    }

    /// <summary>
    /// A replica round's rows: the share of the dashboards' loads the primary ran (goal when the replica keeps up), and with
    /// replay paused the answers marked fresh that miss a write older than <see cref="FreshMissAfter"/> (goal 0).
    /// </summary>
    private void AddReplicaRows(string round, FreshResult result, Dictionary<string, long> replicaLoads, JsonObject detail)
    {
        var (primary, replica) = (result.Loads.Values.Sum(), replicaLoads.Values.Sum());
        var share = primary + replica > 0 ? (double)primary / (primary + replica) : 0;
        var keepsUp = result.Replica == FreshReplica.KeepsUp;
        var metrics = result.SourceMetrics;
        string Sum(string name, string label) => string.Join(", ", (metrics ?? [])
            .Where(m => m.Key.StartsWith(name + "{", StringComparison.Ordinal) && m.Value > 0)
            .GroupBy(m => LabelOf(m.Key, label)).Select(g => $"{g.Key} {g.Sum(m => m.Value):N0}"));
        var fallbacks = Sum("statscache_source_fallbacks_total", "reason");
        var waits = (metrics ?? []).Where(m => m.Key.StartsWith("statscache_source_fence_wait_duration_seconds_count{", StringComparison.Ordinal)).Sum(m => m.Value);
        var waited = (metrics ?? []).Where(m => m.Key.StartsWith("statscache_source_fence_wait_duration_seconds_sum{", StringComparison.Ordinal)).Sum(m => m.Value);
        var why = metrics is null ? "" : $"; fallbacks to the primary: {(fallbacks.Length > 0 ? fallbacks : "none")}; fence waits {waits:N0}"
            + (waits > 0 ? $" ({Sum("statscache_source_fence_wait_duration_seconds_count", "outcome")}; mean {waited / waits * 1000:N0} ms)" : "");
        _report.Add(new ReportRow("fresh", $"{round}: dashboard loads on the primary (pg_stat_statements on each server)", keepsUp ? "≤ 1 %" : "—",
            $"{share:P1}: {primary:N0} on the primary, {replica:N0} on the replica{why}", keepsUp ? share <= 0.01 : null, share * 100));
        detail["replicaLoads"] = new JsonObject([.. replicaLoads.Select(l => KeyValuePair.Create(l.Key, (JsonNode?)l.Value))]);
        detail["primaryShare"] = Math.Round(share, 4);
        detail["sourceMetrics"] = metrics is null ? null : new JsonObject([.. metrics.Where(m => m.Value != 0).OrderBy(m => m.Key)
            .Select(m => KeyValuePair.Create(m.Key, (JsonNode?)Math.Round(m.Value, 3)))]);

        if (result.Replica == FreshReplica.Paused)
        {
            var check = result.Check;
            _report.Add(new ReportRow("fresh", $"{round}: answers marked fresh that miss a write committed over {FreshMissAfter.TotalMilliseconds:N0} ms before", "0",
                $"{check.Missed:N0} of {check.Fresh:N0} fresh answers ({check.Answers:N0} checked); the oldest write a fresh answer missed: "
                + $"{check.OldestMissedByFresh.TotalMilliseconds:N0} ms", check.Missed == 0, check.Missed));
        }
    }

    private static string LabelOf(string key, string label) =>
        key.Split('{', '}', ',').FirstOrDefault(p => p.StartsWith(label + "=", StringComparison.Ordinal))?[(label.Length + 1)..] ?? "";

    /// <summary>
    /// Answers marked fresh (<c>stale: false</c>) that miss a write committed more than <see cref="FreshMissAfter"/> before they
    /// were received: every client-stats answer (readers and probes) against every write to its client (the order is missing
    /// while <c>last_order_id</c> is below it: one writer, ids grow with commits), every admin-overview answer against every write
    /// to its site (missing while the site's order count does not include it).
    /// </summary>
    private sealed class FreshnessCheck
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<int, List<(long OrderId, long CommittedAt)>> _clientWrites = [];
        private readonly Dictionary<long, List<long>> _siteWrites; // commit times, by sequence (index + 1)
        private long _oldestMissed;

        public FreshnessCheck(IEnumerable<long> sites) => _siteWrites = sites.ToDictionary(s => s, _ => new List<long>());

        public long Answers { get; private set; }

        public long Fresh { get; private set; }

        public long Missed { get; private set; }

        /// <summary>The age, when received, of the oldest write an answer marked fresh did not show (threshold or not).</summary>
        public TimeSpan OldestMissedByFresh => Stopwatch.GetElapsedTime(0, _oldestMissed);

        public void Written(int client, long site, long orderId, long committedAt)
        {
            lock (_lock)
            {
                if (!_clientWrites.TryGetValue(client, out var writes))
                {
                    _clientWrites[client] = writes = [];
                }

                writes.Add((orderId, committedAt));
                _siteWrites[site].Add(committedAt);
            }
        }

        public void ClientAnswer(int client, JsonElement data, bool stale, long receivedAt)
        {
            var last = data.GetProperty("summary").GetProperty("last_order_id") is { ValueKind: JsonValueKind.Number } id ? id.GetInt64() : 0;
            lock (_lock)
            {
                long? missing = _clientWrites.TryGetValue(client, out var writes) && writes.FindIndex(w => w.OrderId > last) is var index and >= 0
                    ? writes[index].CommittedAt
                    : null;
                Count(stale, missing, receivedAt);
            }
        }

        public void AdminAnswer(long site, long ordersBefore, JsonElement data, bool stale, long receivedAt)
        {
            var seen = Math.Max(0, data.GetProperty("orders_by_status").GetProperty("total").GetInt64() - ordersBefore);
            lock (_lock)
            {
                var writes = _siteWrites[site];
                Count(stale, seen < writes.Count ? writes[(int)seen] : null, receivedAt);
            }
        }

        private void Count(bool stale, long? oldestMissing, long receivedAt)
        {
            Answers++;
            if (stale)
            {
                return;
            }

            Fresh++;
            if (oldestMissing is not { } committedAt)
            {
                return;
            }

            var age = receivedAt - committedAt;
            _oldestMissed = Math.Max(_oldestMissed, age);
            if (Stopwatch.GetElapsedTime(committedAt, receivedAt) > FreshMissAfter)
            {
                Missed++;
            }
        }

        public JsonObject ToJson()
        {
            lock (_lock)
            {
                return new JsonObject
                {
                    ["answers"] = Answers,
                    ["fresh"] = Fresh,
                    ["missingAWriteOlderThanThreshold"] = Missed,
                    ["oldestWriteMissedByAFreshAnswerMs"] = Math.Round(OldestMissedByFresh.TotalMilliseconds),
                };
            }
        }
    }

    private static string Latency(double seconds) =>
        double.IsFinite(seconds) ? $"{seconds * 1000:N0} ms" : $"> {VisibleWithin.TotalSeconds:0} s";
}
