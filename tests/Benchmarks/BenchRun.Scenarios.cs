using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Npgsql;
using StatsCache.Catalog;
using StatsCache.Source;
using StatsCache.WebHost.Hosting;

namespace StatsCache.Benchmarks;

public sealed partial class BenchRun
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    // ---------------------------------------------------------------- source
    /// <summary>Each view's load (one NpgsqlBatch through PostgresDashboardSource): 2 warm-ups, then p50 and p99 of 20 loads.</summary>
    public async Task SourceAsync()
    {
        var details = new JsonObject();
        foreach (var view in Catalog.Views)
        {
            var role = view.Roles[0];
            var scope = view.Scope == ViewScope.Site
                ? new DashboardScope(1, role, null)
                : new DashboardScope(1, role, await BusiestUserAsync(role));
            var maximum = view.Parameters.ToDictionary(p => p.Name, p => p.Max.ToString(Inv), StringComparer.Ordinal);
            if (!view.TryBind(maximum, out var parameters, out var error))
            {
                throw new InvalidOperationException(error);
            }

            var times = new List<double>();
            for (var i = 0; i < 22; i++)
            {
                var started = Stopwatch.GetTimestamp();
                await PostgresDashboardSource.RunAsync(_db, view, scope, parameters, CancellationToken.None);
                if (i >= 2)
                {
                    times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                }
            }

            var (p50, p99) = (Percentile(times, 50), Percentile(times, 99));
            details[view.Name] = new JsonObject { ["p50_ms"] = Math.Round(p50, 2), ["p99_ms"] = Math.Round(p99, 2), ["parameters"] = parameters.Key };
            _report.Add(new ReportRow("source", $"{view.Name}{(parameters.Key.Length > 0 ? "?" + parameters.Key : "")} load p50 / p99", "—",
                $"{p50:F1} / {p99:F1} ms", null, p50));
        }

        _report.Detail("source", details);
    }

    /// <summary>The user of site 1 with the most orders in that role (the README's "busiest user").</summary>
    private async Task<long> BusiestUserAsync(string role)
    {
        var sql = role switch
        {
            "client" => "select client_id from orders where website_id = 1 group by client_id order by count(*) desc limit 1",
            "writer" => "select writer_id from orders where website_id = 1 and writer_id is not null group by writer_id order by count(*) desc limit 1",
            _ => "select min(id) from users where website_id = 1 and role = @role",
        };
        await using var command = _db.CreateCommand(sql);
        command.Parameters.AddWithValue("role", role);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    // ---------------------------------------------------------------- stampede
    /// <summary>
    /// 1,000 concurrent requests for 1 and for 100 cold keys, through one web host and through three; the loads
    /// PostgreSQL ran are counted by pg_stat_statements (calls of the view's first query, reset before each round),
    /// next to each contender's own counter.
    /// </summary>
    public async Task StampedeAsync()
    {
        var coHosted = await CoHostedAsync();
        var (webHosts, benchClients) = await ClusterAsync(webHosts: 3, benchClients: 2);
        IReadOnlyList<HttpHost> benchHosts = [coHosted, .. benchClients];
        var view = Catalog.Find(Driver.HitView)!;
        var path = $"/api/dashboards/{view.Name}";
        var rounds = new List<(string Contender, IReadOnlyList<HttpHost> Hosts, string Path, string? Counter, bool Goal)>
        {
            ("StatsCache co-hosted", [coHosted], path, "statscache.loads", true),
            ("StatsCache cluster", webHosts.Take(1).ToList(), path, null, true),
            ("StatsCache cluster", webHosts, path, null, true),
            ("FusionCache", [coHosted], $"/bench/fusion/{view.Name}", BenchCounters.FusionLoads, false),
            ("FusionCache", benchHosts, $"/bench/fusion/{view.Name}", BenchCounters.FusionLoads, false),
            ("no cache", [coHosted], $"/bench/nocache/{view.Name}", BenchCounters.NoCacheLoads, false),
            ("no cache", benchHosts, $"/bench/nocache/{view.Name}", BenchCounters.NoCacheLoads, false),
        };

        var details = new JsonArray();
        foreach (var (contender, hosts, requestPath, counter, goal) in rounds)
        {
            foreach (var keys in new[] { 1, 100 })
            {
                var result = await StampedeRoundAsync(hosts, requestPath, keys, counter, view);
                var name = $"{contender}, {hosts.Count} host{(hosts.Count > 1 ? "s" : "")}, {keys} cold key{(keys > 1 ? "s" : "")}";
                var service = result.ServiceLoads is { } s ? s.ToString(Inv) : "n/a";
                var ok = result.Failed == 0 ? "" : $", {result.Failed} failed";
                _report.Add(new ReportRow("stampede", $"{name}: database loads (service count)",
                    goal ? $"= {keys}" : "—", $"{result.DatabaseLoads} ({service}){ok}",
                    goal ? result.DatabaseLoads == keys && result.Failed == 0 : null, result.DatabaseLoads));
                details.Add(new JsonObject
                {
                    ["contender"] = contender,
                    ["hosts"] = hosts.Count,
                    ["keys"] = keys,
                    ["requests"] = _env.StampedeRequests,
                    ["databaseLoads"] = result.DatabaseLoads,
                    ["serviceLoads"] = result.ServiceLoads,
                    ["failed"] = result.Failed,
                    ["seconds"] = Math.Round(result.Elapsed.TotalSeconds, 3),
                });
            }
        }

        _report.Detail("stampede", details);
        await StopExtraHostsAsync();
    }

    private async Task<(long DatabaseLoads, long? ServiceLoads, int Failed, TimeSpan Elapsed)> StampedeRoundAsync(
        IReadOnlyList<HttpHost> hosts, string path, int keys, string? counter, ViewDefinition view)
    {
        var requests = _env.StampedeRequests;
        var tokens = Tokens.Skip(_nextStampedeUser).Take(keys).ToList();
        _nextStampedeUser += keys;
        if (tokens.Count < keys)
        {
            throw new InvalidOperationException("Not enough cold users left for the stampede rounds.");
        }

        // Open the connections first, so the requests arrive together rather than at the pace of TCP handshakes.
        await Task.WhenAll(Enumerable.Range(0, requests).Select(async i =>
        {
            using var response = await ClientFor(hosts[i % hosts.Count]).GetAsync("/healthz");
        }));

        var before = await CountersAsync(hosts, counter);
        await ResetDatabaseLoadsAsync();

        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var calls = Enumerable.Range(0, requests).Select(async i =>
        {
            await gate.Task;
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", tokens[i % keys]);
            using var response = await ClientFor(hosts[i % hosts.Count]).SendAsync(request);
            return response.StatusCode;
        }).ToList();
        var started = Stopwatch.StartNew();
        gate.SetResult();
        var statuses = await Task.WhenAll(calls);
        var elapsed = started.Elapsed;

        var databaseLoads = await DatabaseLoadsAsync(view);
        var after = await CountersAsync(hosts, counter);
        return (databaseLoads, after - before, statuses.Count(s => s != HttpStatusCode.OK), elapsed);
    }

    /// <summary>Starts counting <see cref="DatabaseLoadsAsync"/> from zero (pg_stat_statements forgets every statement).</summary>
    private async Task ResetDatabaseLoadsAsync()
    {
        await using var reset = _db.CreateCommand("select pg_stat_statements_reset()");
        await reset.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// Loads of <paramref name="view"/> since the last reset, from PostgreSQL's own statistics (of the primary, or of
    /// <paramref name="server"/>: the replica's are its own): every load runs
    /// the view's batch once, so the calls of its first query (found by the marker the bench catalog puts in its text).
    /// </summary>
    private async Task<long> DatabaseLoadsAsync(ViewDefinition view, NpgsqlDataSource? server = null)
    {
        await using var command = (server ?? _db).CreateCommand("select coalesce(sum(calls), 0)::bigint from pg_stat_statements where query like @marker");
        // A parameter, so this statement's own text never contains the marker.
        command.Parameters.AddWithValue("marker", "%" + Marker(view.Name, view.Queries[0].Name) + "%");
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The sum of one counter over the bench hosts (null when the hosts keep no such counter: the silos' meters are in other processes).</summary>
    private async Task<long?> CountersAsync(IReadOnlyList<HttpHost> hosts, string? counter)
    {
        if (counter is null)
        {
            return null;
        }

        long total = 0;
        foreach (var host in hosts)
        {
            var counters = await ClientFor(host).GetFromJsonAsync<Dictionary<string, long>>("/bench/counters");
            total += counters![counter];
        }

        return total;
    }

    // ---------------------------------------------------------------- hit
    /// <summary>
    /// Warm reads over HTTP with wrk: 64 connections, a JWT on every request, one hot key, 2,000 keys and 10,000 keys.
    /// StatsCache is the real src/WebHost, co-hosted and in front of the two-silo cluster, near-cache on and off; against it
    /// the physical limit of a cached read (<see cref="MinimalEndpoint"/>, slim and with src/WebHost's metrics), FusionCache
    /// and no cache. Each contender's req/s and latency, and the CPU time and bytes its processes spent per request.
    /// </summary>
    public async Task HitAsync()
    {
        var api = $"/api/dashboards/{Driver.HitView}";
        var benchHost = await CoHostedAsync();
        await ClusterAsync(webHosts: 0, benchClients: 0);
        // The request limit checks every read, so StatsCache's hosts here pay for it; so high that one hot key never meets it.
        var limitChecked = new Dictionary<string, string>
        {
            ["StatsCache__RequestLimit__IsEnabled"] = "true",
            ["StatsCache__RequestLimit__RequestsPerSecond"] = "1000000",
            ["StatsCache__RequestLimit__Burst"] = "1000000",
        };
        var nearCacheOff = new Dictionary<string, string>(limitChecked) { ["StatsCache__NearCache__IsEnabled"] = "false" };
        var minimal = await StartMinimalAsync("minimal", withMetrics: false);
        var instrumented = await StartMinimalAsync("minimal-metrics", withMetrics: true);
        var coHosted = await StartCoHostedWebHostAsync("webhost-co-hosted", limitChecked);
        var cluster = await StartClusterWebHostAsync("webhost-hit", limitChecked);
        var coHostedOff = await StartCoHostedWebHostAsync("webhost-co-hosted-no-near-cache", nearCacheOff);
        var clusterOff = await StartClusterWebHostAsync("webhost-no-near-cache", nearCacheOff);
        var contenders = new List<HitContender>
        {
            new(MinimalContender, minimal, api, Caches: false, [minimal.Process], AllocationSource.Minimal),
            new(InstrumentedContender, instrumented, api, Caches: false, [instrumented.Process], AllocationSource.Minimal),
            new(CoHostedContender, coHosted, api, Caches: true, [coHosted.Process], AllocationSource.Metrics),
            new(ClusterContender, cluster, api, Caches: true, [cluster.Process, .. _silos], AllocationSource.Metrics),
            new(CoHostedNoNearCacheContender, coHostedOff, api, Caches: true, [coHostedOff.Process], AllocationSource.Metrics),
            new(ClusterNoNearCacheContender, clusterOff, api, Caches: true, [clusterOff.Process, .. _silos], AllocationSource.Metrics),
            new(FusionCacheContender, benchHost, $"/bench/fusion/{Driver.HitView}", Caches: true, [benchHost.Process], AllocationSource.BenchHost),
            new(NoCacheContender, benchHost, $"/bench/nocache/{Driver.HitView}", Caches: false, [benchHost.Process], AllocationSource.BenchHost),
        };

        var details = new JsonArray();
        foreach (var (keySet, tokenFile, count) in new[]
        {
            ("1 hot key", HotTokensPath, 1),
            ($"{_env.HitMiddleKeys:N0} keys", MiddleTokensPath, _env.HitMiddleKeys),
            ($"{_env.HitKeys:N0} keys", ManyTokensPath, _env.HitKeys),
        })
        {
            foreach (var contender in contenders)
            {
                // Warm: every key once for the caches (so the run measures hits), a thousand requests (JIT, pools) otherwise.
                await WarmAsync(contender.Host, contender.Path, contender.Caches ? count : 1, contender.Caches ? count : 1_000);
            }

            // The contenders take turns, a slice each per round, so whatever else the machine does during
            // the run (it is shared) falls on all of them alike instead of on whoever ran at that moment.
            var rounds = contenders.ToDictionary(c => c.Name, _ => new List<HitResult>());
            var grainCalls = new Dictionary<string, long>();
            for (var round = 0; round < _env.HitRounds; round++)
            {
                foreach (var contender in contenders)
                {
                    // A second of the same reads first, not measured: between its turns a contender stands idle (its
                    // pools shrink, its caches go cold) as a busy host never does; every contender gets the same.
                    await WrkAsync(contender.Host, contender.Path, tokenFile, 1);

                    // The measured slice alone: the host's counters, then its processes' CPU time, right before and right after it.
                    var before = await HostCountersAsync(contender);
                    var cpuBefore = CpuSecondsOf(contender.Serving);
                    var slice = await WrkAsync(contender.Host, contender.Path, tokenFile, Math.Max(1, _env.HitSeconds / _env.HitRounds));
                    var cpu = CpuSecondsOf(contender.Serving) - cpuBefore;
                    var after = await HostCountersAsync(contender);
                    rounds[contender.Name].Add(new HitResult(slice, cpu, after.AllocatedBytes - before.AllocatedBytes));
                    if (after.NearCacheMisses is { } misses)
                    {
                        grainCalls[contender.Name] = grainCalls.GetValueOrDefault(contender.Name) + (misses - before.NearCacheMisses!.Value);
                    }
                }
            }

            var results = contenders.ToDictionary(c => c.Name, c => HitResult.Combine(rounds[c.Name]));
            var minimalP99 = results[MinimalContender].Wrk.P99Ms;
            foreach (var contender in contenders)
            {
                var name = contender.Name;
                var (wrk, cpu, bytes) = (results[name].Wrk, results[name].CpuMicrosecondsPerRequest, results[name].BytesPerRequest);
                var goal = IsShipped(name);
                var withSilos = contender.Serving.Count > 1;
                _report.Add(new ReportRow("hit", $"{keySet}: {name} req/s, p50, p99", goal ? "p99 ≤ 1.25 × minimal's" : "—",
                    $"{wrk.RequestsPerSecond:N0} req/s, {wrk.P50Ms:F2} / {wrk.P99Ms:F2} ms"
                    + $", {cpu:F1} µs CPU per request{(withSilos ? " (web host and both silos)" : "")}"
                    + $", {bytes:N0} B allocated per request{(withSilos ? " (the web host's)" : "")}"
                    + (grainCalls.TryGetValue(name, out var calls) ? $", {calls * 1000.0 / wrk.Requests:F1} grain calls per 1,000 reads" : "")
                    + (wrk.Errors > 0 ? $", {wrk.Errors} errors" : ""),
                    goal ? wrk.P99Ms <= 1.25 * minimalP99 && wrk.Errors == 0 : null, wrk.RequestsPerSecond));
                details.Add(new JsonObject
                {
                    ["keys"] = count,
                    ["contender"] = name,
                    ["requestsPerSecond"] = Math.Round(wrk.RequestsPerSecond),
                    ["p50Ms"] = Math.Round(wrk.P50Ms, 3),
                    ["p99Ms"] = Math.Round(wrk.P99Ms, 3),
                    ["maxMs"] = Math.Round(wrk.MaxMs, 3),
                    ["errors"] = wrk.Errors,
                    ["requests"] = wrk.Requests,
                    ["cpuMicrosecondsPerRequest"] = Math.Round(cpu, 2),
                    ["allocatedBytesPerRequest"] = Math.Round(bytes),
                    ["grainCallsPer1000Reads"] = grainCalls.TryGetValue(name, out var perThousand) ? Math.Round(perThousand * 1000.0 / wrk.Requests, 2) : null,
                });
            }

            // Goals for StatsCache as shipped (near-cache on); the near-cache-off rows show what it adds.
            var instrumentedCpu = results[InstrumentedContender].CpuMicrosecondsPerRequest;
            foreach (var statsCache in new[] { CoHostedContender, ClusterContender, CoHostedNoNearCacheContender, ClusterNoNearCacheContender })
            {
                var goal = IsShipped(statsCache);
                var ours = results[statsCache];
                foreach (var (other, wanted) in new[] { (MinimalContender, 0.85), (InstrumentedContender, 0.98), (FusionCacheContender, 1.0), (NoCacheContender, 20.0) })
                {
                    var ratio = ours.Wrk.RequestsPerSecond / results[other].Wrk.RequestsPerSecond;
                    _report.Add(new ReportRow("hit", $"{keySet}: {statsCache} / {other} (req/s)", goal ? $"≥ {wanted:0.0#}" : "—",
                        $"{ratio:F2}", goal ? ratio >= wanted : null, ratio));
                }

                var cpuRatio = ours.CpuMicrosecondsPerRequest / instrumentedCpu;
                _report.Add(new ReportRow("hit", $"{keySet}: {statsCache} / {InstrumentedContender} (CPU per request)", goal ? "≤ 1.15" : "—",
                    $"{cpuRatio:F2}", goal ? cpuRatio <= 1.15 : null, cpuRatio));
            }
        }

        // At rest, after the last key set, every key cached and nobody reading: what each contender's processes spend on their
        // own (the cache's upkeep: refresh timers and their loads, watch renewals, heartbeats, membership; the runtime's timers
        // and thread pool). It is part of every CPU per request above; here on its own, all contenders measured at once.
        var restBefore = contenders.ToDictionary(c => c.Name, c => CpuSecondsOf(c.Serving));
        await Task.Delay(RestWindow);
        foreach (var contender in contenders)
        {
            var perSecond = (CpuSecondsOf(contender.Serving) - restBefore[contender.Name]) / RestWindow.TotalSeconds;
            _report.Add(new ReportRow("hit", $"at rest: {contender.Name}", "—", $"{perSecond * 1000:F0} ms CPU per second", null, perSecond));
            details.Add(new JsonObject { ["atRest"] = true, ["contender"] = contender.Name, ["cpuMillisecondsPerSecond"] = Math.Round(perSecond * 1000, 1) });
        }

        _report.Detail("hit", details);

        // hit's own processes: they would share the cores with the scenarios after it (the benchmark host and the cluster stay for those).
        foreach (var host in new[] { minimal, instrumented, coHosted, cluster, coHostedOff, clusterOff })
        {
            await StopHostAsync(host);
        }
    }

    private static readonly TimeSpan RestWindow = TimeSpan.FromSeconds(5);

    private const string MinimalContender = "minimal";
    private const string InstrumentedContender = "minimal + metrics";
    private const string CoHostedContender = "StatsCache co-hosted";
    private const string ClusterContender = "StatsCache cluster";
    private const string CoHostedNoNearCacheContender = "StatsCache co-hosted, near-cache off";
    private const string ClusterNoNearCacheContender = "StatsCache cluster, near-cache off";
    private const string FusionCacheContender = "FusionCache";
    private const string NoCacheContender = "no cache";

    /// <summary>
    /// The runtime's <c>dotnet.gc.heap.total_allocated</c> (meter System.Runtime, unit <c>By</c>, a counter of
    /// <see cref="GC.GetTotalAllocatedBytes"/>) as the Prometheus exporter names it: the unit's <c>_bytes</c>, then a counter's <c>_total</c>.
    /// </summary>
    private const string AllocatedMetric = "dotnet_gc_heap_total_allocated_bytes_total";

    private const string NearCacheMissesMetric = "statscache_nearcache_misses_total";

    /// <summary>StatsCache as shipped (near-cache on), co-hosted or as a cluster: the goals are theirs, and their grain calls are counted.</summary>
    private static bool IsShipped(string contender) => contender is CoHostedContender or ClusterContender;

    /// <summary>
    /// A hit contender: the host and path it answers on, whether it caches (warmed with every key), the processes that serve
    /// it (its CPU time is theirs: a cluster's web host and both silos) and where its host tells the bytes it has allocated.
    /// </summary>
    private sealed record HitContender(string Name, HttpHost Host, string Path, bool Caches, IReadOnlyList<ChildProcess> Serving, AllocationSource Allocation);

    /// <summary>Where a hit contender's host tells the bytes it has allocated since it started.</summary>
    private enum AllocationSource
    {
        /// <summary><see cref="MinimalEndpoint.AllocatedPath"/>.</summary>
        Minimal,

        /// <summary>The benchmark host's <c>/bench/counters</c> (<see cref="BenchCounters.AllocatedBytes"/>).</summary>
        BenchHost,

        /// <summary>src/WebHost's Prometheus text (<see cref="AllocatedMetric"/>).</summary>
        Metrics,
    }

    /// <summary>
    /// Bytes the contender's host has allocated so far and, for StatsCache as shipped, its near-cache misses (each a grain
    /// call); null misses for the others. A cluster's silos are not asked: its bytes are its web host's.
    /// </summary>
    private async Task<(long AllocatedBytes, long? NearCacheMisses)> HostCountersAsync(HitContender contender)
    {
        var host = contender.Host;
        if (contender.Allocation == AllocationSource.Minimal)
        {
            return (await ClientFor(host).GetFromJsonAsync<long>(MinimalEndpoint.AllocatedPath), null);
        }

        if (contender.Allocation == AllocationSource.BenchHost)
        {
            return ((await CountersAsync([host], BenchCounters.AllocatedBytes))!.Value, null);
        }

        // One scrape for both figures.
        var metrics = await ClientFor(host).GetStringAsync(ObservabilityExtensions.MetricsPath);
        return ((long)PrometheusSum(host, metrics, AllocatedMetric), IsShipped(contender.Name) ? (long)PrometheusSum(host, metrics, NearCacheMissesMetric) : null);
    }

    /// <summary>The sum of a metric's samples (every label set) in a host's Prometheus text; throws when it has none rather than read 0.</summary>
    private static double PrometheusSum(HttpHost host, string text, string metric)
    {
        var samples = text.Split('\n')
            .Where(line => line.StartsWith(metric, StringComparison.Ordinal) && line.Length > metric.Length && line[metric.Length] is ' ' or '{')
            .Select(line =>
            {
                // name{labels} value [timestamp]: the value follows the labels' closing brace, or the name.
                var value = line[metric.Length] == '{' ? line[(line.LastIndexOf('}') + 1)..] : line[metric.Length..];
                return double.Parse(value.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], Inv);
            })
            .ToList();
        return samples.Count > 0 ? samples.Sum() : throw new InvalidOperationException($"{host.Name}'s {ObservabilityExtensions.MetricsPath} has no {metric}.");
    }

    /// <summary>The CPU time (user + system) <paramref name="processes"/> have used so far, in seconds.</summary>
    private static double CpuSecondsOf(IReadOnlyList<ChildProcess> processes) =>
        processes.Sum(p => CpuSeconds(p.Id) ?? throw new InvalidOperationException($"{p.Name} has exited; see {p.LogPath}."));

    /// <summary>A contender's measured slices: wrk's figures, and the CPU seconds and the bytes its processes spent on them.</summary>
    private sealed record HitResult(WrkResult Wrk, double CpuSeconds, long AllocatedBytes)
    {
        public double CpuMicrosecondsPerRequest => CpuSeconds * 1e6 / Wrk.Requests;

        public double BytesPerRequest => AllocatedBytes / (double)Wrk.Requests;

        public static HitResult Combine(IReadOnlyList<HitResult> slices) =>
            new(WrkResult.Combine([.. slices.Select(s => s.Wrk)]), slices.Sum(s => s.CpuSeconds), slices.Sum(s => s.AllocatedBytes));
    }

    private async Task WarmAsync(HttpHost host, string path, int keys, int requests)
    {
        var client = ClientFor(host);
        await Parallel.ForEachAsync(Enumerable.Range(0, requests), new ParallelOptions { MaxDegreeOfParallelism = _env.Connections }, async (i, ct) =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Tokens[i % keys]);
            using var response = await client.SendAsync(request, ct);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw new InvalidOperationException($"Warm-up of {host.Name}{path} got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
            }
        });
    }

    private sealed record WrkResult(long Requests, double Seconds, double P50Ms, double P99Ms, double MaxMs, long Errors)
    {
        public double RequestsPerSecond => Requests / Seconds;

        /// <summary>One contender's slices as one result: requests over time, the median slice's p50 and p99, the slowest request.</summary>
        public static WrkResult Combine(IReadOnlyList<WrkResult> slices) => new(
            slices.Sum(r => r.Requests),
            slices.Sum(r => r.Seconds),
            Percentile([.. slices.Select(r => r.P50Ms)], 50),
            Percentile([.. slices.Select(r => r.P99Ms)], 50),
            slices.Max(r => r.MaxMs),
            slices.Sum(r => r.Errors));
    }

    private async Task<WrkResult> WrkAsync(HttpHost host, string path, string tokenFile, int seconds)
    {
        var start = new ProcessStartInfo("wrk",
        [
            "-t2", $"-c{_env.Connections}", $"-d{seconds}s", "--timeout", "5s", "--latency",
            "-s", _env.WrkScript, new Uri(host.Url, path).ToString(), "--", tokenFile,
        ])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var wrk = Process.Start(start)!;
        var output = await wrk.StandardOutput.ReadToEndAsync();
        var errors = await wrk.StandardError.ReadToEndAsync();
        await wrk.WaitForExitAsync();
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("BENCH_JSON ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"wrk printed no result (exit {wrk.ExitCode}):\n{output}\n{errors}");
        var json = JsonNode.Parse(line["BENCH_JSON ".Length..])!;
        long L(string name) => (long)json[name]!;
        return new WrkResult(
            L("requests"),
            L("duration_us") / 1e6,
            L("p50_us") / 1000.0,
            L("p99_us") / 1000.0,
            L("max_us") / 1000.0,
            L("errors_connect") + L("errors_read") + L("errors_write") + L("errors_status") + L("errors_timeout"));
    }

    // ---------------------------------------------------------------- refresh
    /// <summary>Runs <see cref="RefreshScenario"/> in a process of its own (one silo, nothing else in it) and reports its figures.</summary>
    public async Task RefreshAsync()
    {
        // The hosts of the other scenarios would share the cores with the silo's timers: stop them first.
        await StopAllHostsAsync();

        var environment = CommonEnvironment();
        environment["StatsCache__CatalogPath"] = RefreshCatalogPath;
        environment[SlotNameKey] = SlotFor("refresh"); // its silo streams a slot of its own, dropped when the next scenario stops the hosts
        environment["Orleans__SiloPort"] = Port();
        environment["Orleans__GatewayPort"] = Port();
        environment[RefreshScenario.EntriesKey.Replace(":", "__", StringComparison.Ordinal)] = _env.RefreshEntries.ToString(Inv);
        environment[RefreshScenario.PayloadPathKey.Replace(":", "__", StringComparison.Ordinal)] = DataPayloadPath;
        var child = Track(ChildProcess.Start("refresh", _env.SelfDll, ["refresh"], environment, _env.WorkFolder));
        var exit = await child.WaitForExitAsync(TimeSpan.FromMinutes(6));
        var line = File.ReadLines(child.LogPath).LastOrDefault(l => l.StartsWith("BENCH_JSON ", StringComparison.Ordinal));
        if (exit != 0 || line is null)
        {
            throw new InvalidOperationException($"The refresh scenario failed (exit {exit}); see {child.LogPath}.");
        }

        var json = JsonNode.Parse(line["BENCH_JSON ".Length..])!.AsObject();
        _report.Detail("refresh", json.DeepClone());
        var entries = (int)json["entries"]!;
        var heap = (double)json["heapBytesPerEntry"]!;
        var workingSet = (double)json["workingSetBytesPerEntry"]!;
        var average = (double)json["averageLoadsPerSecond"]!;
        var busiest = (double)json["busiestLoadsPerSecond"]!;
        var ttl = (int)json["ttlSeconds"]!;
        _report.Add(new ReportRow("refresh", $"{entries:N0} entries, TTL {ttl} s: memory per entry (GC heap)", "≤ 10 KB",
            $"{heap / 1024:F2} KB", heap <= 10 * 1024, heap));
        _report.Add(new ReportRow("refresh", "memory per entry (process working set)", "≤ 10 KB",
            $"{workingSet / 1024:F2} KB", workingSet <= 10 * 1024, workingSet));
        _report.Add(new ReportRow("refresh", "source queries per second over two TTLs (average)", $"≈ {entries / (double)ttl:N0} (entries / TTL)",
            $"{average:N0}", null, average));
        var createSeconds = (double)json["createSeconds"]!;
        _report.Add(new ReportRow("refresh", $"busiest second / average (entries created in {createSeconds:F0} s)", "≤ 1.5", $"{busiest / average:F2} ({busiest:N0}/s)", busiest / average <= 1.5, busiest / average));
    }

    private static double Percentile(List<double> values, double percentile)
    {
        var sorted = values.Order().ToList();
        var rank = (int)Math.Ceiling(percentile / 100 * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }
}
