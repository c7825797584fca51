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

    // An open dashboard page polls its view about once a second; the readers are spread over the second in slices.
    private static readonly TimeSpan ReaderPollInterval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan ReaderTick = TimeSpan.FromMilliseconds(50);

    // ---------------------------------------------------------------- fresh
    /// <summary>
    /// A steady write load (orders inserted at a fixed rate over many clients) while the open dashboards poll,
    /// co-hosted with the change feed on, the same with TTL refreshes only, and the two-silo cluster with the
    /// feed on, each round on hosts of its own. Reports write-to-visible latency (client-stats of probed writes,
    /// admin-overview of every write) and the loads PostgreSQL ran per second (pg_stat_statements), next to
    /// the write rate achieved.
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

        var rounds = new (string Name, bool ChangeFeed, Func<Task<HttpHost>> StartAsync)[]
        {
            ("co-hosted, change feed on", true, () => StartCoHostedAsync("fresh-feed", new Dictionary<string, string>())),
            ("co-hosted, TTL only", false,
                () => StartCoHostedAsync("fresh-ttl", new Dictionary<string, string> { ["StatsCache__Changes__IsEnabled"] = "false" })),
            // Two silos, each listening to the feed and told only about the grains it holds; reads through a web host.
            ("cluster of 2 silos, change feed on", true, async () => (await ClusterAsync(webHosts: 1, benchClients: 0)).WebHosts[0]),
        };
        var details = new JsonArray();
        foreach (var (round, changeFeed, startAsync) in rounds)
        {
            FreshResult result;
            try
            {
                result = await FreshRoundAsync(await startAsync(), clients, admins);
            }
            finally
            {
                // Stopped before the next round starts, so the rounds do not share the cores.
                await StopAllHostsAsync();
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
            ["rounds"] = details,
        });
    }

    /// <summary>One round's figures; latencies in seconds from commit to the first answer showing the write, +∞ when none did within <see cref="VisibleWithin"/>.</summary>
    private sealed record FreshResult(
        int Writes, double WriteSeconds, List<double> ClientLatencies, List<double> AdminLatencies,
        Dictionary<string, long> Loads, long Reads, long FailedReads, double Seconds);

    /// <summary>HTTP reads of one round, by every reader, prober and admin.</summary>
    private sealed class FreshReads
    {
        public long Count;
        public long Failed;
    }

    private async Task<FreshResult> FreshRoundAsync(HttpHost host, List<Caller> clients, List<Caller> admins)
    {
        var http = ClientFor(host);
        var adminTokens = admins.Select(TokenFor).ToList();
        if (host.Slot is { } slot)
        {
            await WaitForSlotStreamedAsync(host.Process, slot);
        }

        // The open dashboards are read once first, so their entries exist before the writes, as on a live site.
        await WarmAsync(host, $"/api/dashboards/{Driver.HitView}", _env.FreshReaders, _env.FreshReaders);
        foreach (var token in adminTokens)
        {
            _ = await ReadViewAsync(http, AdminView, token, new FreshReads()) ?? throw new InvalidOperationException($"{host.Name} did not answer {AdminView}.");
        }

        var ordersBefore = await OrdersBySiteAsync(admins.Select(a => a.SiteId));
        var pending = admins.ToDictionary(a => a.SiteId, _ => new ConcurrentQueue<(long Sequence, long CommittedAt)>());
        await ResetDatabaseLoadsAsync();

        // Pollers stop once every write they watch is seen, or VisibleWithin after the last write.
        using var tail = new CancellationTokenSource();
        var reads = new FreshReads();
        var started = Stopwatch.GetTimestamp();
        var writer = WriteOrdersAsync(clients, pending, _env.FreshProbesPerSecond, _env.FreshReaders,
            (client, orderId, committedAt) => ProbeAsync(http, Tokens[client], orderId, committedAt, reads));
        var readers = PollReadersAsync(http, reads, writer);
        var adminPolls = admins.Select((a, i) => PollAdminAsync(http, adminTokens[i], ordersBefore[a.SiteId], pending[a.SiteId], writer, tail.Token, reads)).ToList();

        var (writes, writeSeconds, probes) = await writer;
        tail.CancelAfter(VisibleWithin);
        // Loads over the writing window, read as it ends. Reloads trail their writes by the debounce (250 ms),
        // so the window holds those of all but its last quarter second of writes: under 1 % short of a steady state.
        var loads = new Dictionary<string, long>();
        foreach (var view in Catalog.Views)
        {
            loads[view.Name] = await DatabaseLoadsAsync(view);
        }

        await readers;
        var clientLatencies = (await Task.WhenAll(probes)).ToList();
        var adminLatencies = (await Task.WhenAll(adminPolls)).SelectMany(l => l).ToList();
        return new FreshResult(writes, writeSeconds, clientLatencies, adminLatencies, loads, reads.Count, reads.Failed,
            Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>
    /// Inserts <see cref="BenchEnvironment.FreshSeconds"/> of orders at <see cref="BenchEnvironment.FreshWritesPerSecond"/>
    /// over <paramref name="clients"/>, and starts a probe for about <paramref name="probesPerSecond"/> of them a second
    /// (writes to the first <paramref name="probed"/> clients, those with their dashboard open).
    /// </summary>
    private async Task<(int Writes, double Seconds, List<Task<double>> Probes)> WriteOrdersAsync(
        List<Caller> clients, Dictionary<long, ConcurrentQueue<(long Sequence, long CommittedAt)>> pending,
        int probesPerSecond, int probed, Func<int, long, long, Task<double>> probe)
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
    private static async Task<double> ProbeAsync(HttpClient http, string token, long orderId, long committedAt, FreshReads reads)
    {
        while (true)
        {
            var data = await ReadViewAsync(http, Driver.HitView, token, reads);
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
    private async Task PollReadersAsync(HttpClient http, FreshReads reads, Task writes)
    {
        var slices = (int)(ReaderPollInterval / ReaderTick);
        using var timer = new PeriodicTimer(ReaderTick);
        for (var tick = 0; !writes.IsCompleted && await timer.WaitForNextTickAsync(); tick++)
        {
            var slice = tick % slices;
            await Task.WhenAll(Enumerable.Range(0, _env.FreshReaders).Where(i => i % slices == slice)
                .Select(i => ReadViewAsync(http, Driver.HitView, Tokens[i], reads)));
        }
    }

    /// <summary>
    /// A site's admin polls the admin view: a write is visible once the site's order count includes it (the writer
    /// commits one at a time, in sequence). Seconds from commit for every write of the site, +∞ for those not seen.
    /// </summary>
    private static async Task<List<double>> PollAdminAsync(
        HttpClient http, string token, long ordersBefore, ConcurrentQueue<(long Sequence, long CommittedAt)> pending,
        Task writes, CancellationToken tail, FreshReads reads)
    {
        var latencies = new List<double>();
        while (!tail.IsCancellationRequested && !(writes.IsCompleted && pending.IsEmpty))
        {
            var data = await ReadViewAsync(http, AdminView, token, reads);
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

    /// <summary>One read of a view as a dashboard makes it: its data, or null (counted as failed) when the answer is not 200.</summary>
    private static async Task<JsonElement?> ReadViewAsync(HttpClient http, string view, string token, FreshReads reads)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/dashboards/{view}");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await http.SendAsync(request);
        Interlocked.Increment(ref reads.Count);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            Interlocked.Increment(ref reads.Failed);
            return null;
        }

        using var json = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync());
        return json.RootElement.GetProperty("data").Clone();
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

        var writesPerSecond = result.Writes / result.WriteSeconds;
        var loadsPerSecond = result.Loads.Values.Sum() / result.WriteSeconds;
        var byView = string.Join(", ", result.Loads.Where(l => l.Value > 0).OrderByDescending(l => l.Value)
            .Select(l => $"{l.Key} {l.Value / result.WriteSeconds:F1}"));
        var failed = result.FailedReads > 0 ? $", {result.FailedReads:N0} reads failed" : "";
        _report.Add(new ReportRow("fresh", $"{round}: source loads/s, open dashboards: {open}", goal ? "< write rate" : "—",
            $"{loadsPerSecond:F1} at {writesPerSecond:F1} writes/s{(byView.Length > 0 ? $" ({byView})" : "")}{failed}",
            goal ? loadsPerSecond < writesPerSecond : null, loadsPerSecond));
        detail["loads"] = new JsonObject([.. result.Loads.Select(l => KeyValuePair.Create(l.Key, (JsonNode?)l.Value))]);
        detail["loadsPerSecond"] = Math.Round(loadsPerSecond, 1);
        return detail;
    }

    private static string Latency(double seconds) =>
        double.IsFinite(seconds) ? $"{seconds * 1000:N0} ms" : $"> {VisibleWithin.TotalSeconds:0} s";
}
