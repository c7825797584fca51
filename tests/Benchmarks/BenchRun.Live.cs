using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using StatsCache.WebHost.Auth;

namespace StatsCache.Benchmarks;

public sealed partial class BenchRun
{
    // A write whose event has not come this long after its commit is reported as not seen.
    private static readonly TimeSpan EventWithin = TimeSpan.FromSeconds(5);

    // ---------------------------------------------------------------- live
    /// <summary>
    /// Issue 15's live dashboards: <see cref="BenchEnvironment.LiveStreams"/> open streams on one co-hosted web host,
    /// half of them the fresh clients' client-stats (several tabs each), half the admin-overview of their sites' admins,
    /// while orders are written as in fresh. Reports write-to-event latency (client-stats: every write, on the first of
    /// its client's streams to show it; admin-overview: every write of the site, on one stream per site), the loads
    /// PostgreSQL ran per second next to the write rate, the events delivered, and the web host's memory per open stream.
    /// </summary>
    public async Task LiveAsync()
    {
        await StopAllHostsAsync();
        var clients = Clients.Take(_env.FreshClients).ToList();
        var sites = clients.Select(c => c.SiteId).Distinct().ToList();
        var admins = await AllAdminsAsync(sites);
        var clientStreams = _env.LiveStreams / 2;
        var adminStreams = _env.LiveStreams - clientStreams;
        var host = await StartCoHostedAsync("live", new Dictionary<string, string>
        {
            ["StatsCache__Live__MaxStreams"] = (_env.LiveStreams * 2).ToString(Inv),
            // Several tabs per client and thousands of streams per admin: the per-caller cap would refuse them.
            ["StatsCache__Live__MaxStreamsPerCaller"] = "1000",
        });
        var open = $"{clientStreams:N0} {Driver.HitView} of {clients.Count:N0} clients, {adminStreams:N0} {AdminView} of {admins.Count} admins of sites {string.Join(", ", sites)}";
        Console.WriteLine($"   {_env.LiveStreams:N0} streams ({open}); {_env.FreshWritesPerSecond} orders/s for {_env.FreshSeconds} s");

        try
        {
            if (host.Slot is { } slot)
            {
                await WaitForSlotStreamedAsync(host.Process, slot);
            }

            // The entries exist first (as on a live site): the memory measured is the streams'.
            await WarmAsync(host, $"/api/dashboards/{Driver.HitView}", clients.Count, clients.Count);
            using var streams = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue }) { BaseAddress = host.Url, Timeout = Timeout.InfiniteTimeSpan };
            var probe = ClientFor(host);
            var before = await MemoryAsync(probe);

            var probes = new LiveProbes(clients, sites);
            var opened = Stopwatch.StartNew();
            var readers = new List<Task>();
            using var stop = new CancellationTokenSource();
            using var first = new CountdownEvent(_env.LiveStreams);
            using var gate = new SemaphoreSlim(64); // opened 64 at a time, each until its first event
            for (var i = 0; i < _env.LiveStreams; i++)
            {
                var (caller, view, measured) = i < clientStreams
                    ? (clients[i % clients.Count], Driver.HitView, true)
                    : (admins[(i - clientStreams) % admins.Count], AdminView, i - clientStreams < sites.Count);
                await gate.WaitAsync();
                readers.Add(ReadStreamAsync(streams, TokenFor(caller), caller, view, measured, probes, first, gate, stop.Token));
            }

            if (!first.Wait(TimeSpan.FromMinutes(2)))
            {
                throw new InvalidOperationException($"Only {_env.LiveStreams - first.CurrentCount:N0} of {_env.LiveStreams:N0} streams opened.");
            }

            var openSeconds = opened.Elapsed.TotalSeconds;
            var after = await MemoryAsync(probe);
            var eventsBefore = probes.Events;

            var ordersBefore = await OrdersBySiteAsync(sites);
            probes.Start(ordersBefore);
            await ResetDatabaseLoadsAsync();
            var written = Stopwatch.StartNew();
            // Every write to a client with a stream open is a probe (the client streams cover the first clients).
            var (writes, writeSeconds, _) = await WriteOrdersAsync(
                clients, probes.SiteWrites, _env.FreshWritesPerSecond, Math.Min(clientStreams, clients.Count), probes.Expect);
            var loads = 0L;
            foreach (var view in Catalog.Views)
            {
                loads += await DatabaseLoadsAsync(view);
            }

            await probes.SettleAsync(EventWithin);
            var events = probes.Events - eventsBefore;
            var eventSeconds = written.Elapsed.TotalSeconds;
            await stop.CancelAsync();
            await Task.WhenAll(readers);

            AddLiveRows(open, writes, writeSeconds, loads, probes, events, eventSeconds, before, after, openSeconds);
        }
        finally
        {
            await StopAllHostsAsync();
        }
    }

    private void AddLiveRows(
        string open, int writes, double writeSeconds, long loads, LiveProbes probes, long events, double eventSeconds,
        (long Heap, long WorkingSet) before, (long Heap, long WorkingSet) after, double openSeconds)
    {
        var streams = _env.LiveStreams;
        var detail = new JsonObject
        {
            ["streams"] = streams,
            ["open"] = open,
            ["openSeconds"] = Math.Round(openSeconds, 1),
            ["writes"] = writes,
            ["writesPerSecond"] = Math.Round(writes / writeSeconds, 1),
            ["eventsPerSecond"] = Math.Round(events / eventSeconds),
            ["failedStreams"] = probes.Failed,
        };
        foreach (var (view, latencies, sample) in new[] { (Driver.HitView, probes.ClientLatencies(), "every write"), (AdminView, probes.AdminLatencies(), "every write of the site") })
        {
            var (p50, p99) = (Percentile(latencies, 50), Percentile(latencies, 99));
            var seen = latencies.Count(double.IsFinite);
            _report.Add(new ReportRow("live", $"{view} write-to-event p50 / p99 ({sample})", "p99 < 1 s",
                $"{LiveLatency(p50)} / {LiveLatency(p99)}, seen {seen:N0} of {latencies.Count:N0}", p99 < 1, double.IsFinite(p99) ? p99 : null));
            detail[view] = new JsonObject
            {
                ["writes"] = latencies.Count,
                ["seen"] = seen,
                ["p50Ms"] = double.IsFinite(p50) ? Math.Round(p50 * 1000) : null,
                ["p99Ms"] = double.IsFinite(p99) ? Math.Round(p99 * 1000) : null,
            };
        }

        var writesPerSecond = writes / writeSeconds;
        var loadsPerSecond = loads / writeSeconds;
        var failed = probes.Failed > 0 ? $", {probes.Failed:N0} streams failed" : "";
        _report.Add(new ReportRow("live", $"source loads/s; {streams:N0} streams: {open}", "< write rate",
            $"{loadsPerSecond:F1} at {writesPerSecond:F1} writes/s; {events / eventSeconds:N0} events/s delivered{failed}",
            loadsPerSecond < writesPerSecond, loadsPerSecond));
        var heapPerStream = (after.Heap - before.Heap) / (double)streams;
        var setPerStream = (after.WorkingSet - before.WorkingSet) / (double)streams;
        // Judged on the GC heap: the objects the streams hold, after full compacting collections on both sides. The
        // working set is shown beside it; it also holds what the server GC keeps committed for the next allocations.
        _report.Add(new ReportRow("live", "memory per open stream: web host GC heap (working set)", "≤ 20 KB",
            $"{heapPerStream / 1024:F1} KB ({setPerStream / 1024:F1} KB)", heapPerStream <= 20 * 1024, heapPerStream / 1024));
        detail["loadsPerSecond"] = Math.Round(loadsPerSecond, 1);
        detail["heapBytesPerStream"] = Math.Round(heapPerStream);
        detail["workingSetBytesPerStream"] = Math.Round(setPerStream);
        _report.Detail("live", detail);
    }

    private static string LiveLatency(double seconds) =>
        double.IsFinite(seconds) ? $"{seconds * 1000:N0} ms" : $"> {EventWithin.TotalSeconds:0} s";

    private static async Task<(long Heap, long WorkingSet)> MemoryAsync(HttpClient http)
    {
        var memory = await http.GetFromJsonAsync<Dictionary<string, long>>("/bench/memory") ?? throw new InvalidOperationException("No memory figures.");
        return (memory["heap"], memory["workingSet"]);
    }

    /// <summary>Every admin of the sites, in id order.</summary>
    private async Task<List<Caller>> AllAdminsAsync(List<long> sites)
    {
        await using var command = _db.CreateCommand("select website_id, id from users where role = 'admin' and website_id = any(@sites) order by website_id, id");
        command.Parameters.AddWithValue("sites", sites.ToArray());
        await using var reader = await command.ExecuteReaderAsync();
        var admins = new List<Caller>();
        while (await reader.ReadAsync())
        {
            admins.Add(new Caller(reader.GetInt64(0), "admin", reader.GetInt64(1)));
        }

        // Interleaved by site, so any first N streams cover every site.
        return [.. admins.GroupBy(a => a.SiteId).SelectMany(g => g.Select((a, i) => (a, i))).OrderBy(x => x.i).ThenBy(x => x.a.SiteId).Select(x => x.a)];
    }

    /// <summary>
    /// One stream, read until the run stops. Measured streams parse their events (a client's last order id, a site's
    /// order count) for <paramref name="probes"/>; the others only count theirs, as cheaply as a browser would receive them.
    /// </summary>
    private static async Task ReadStreamAsync(
        HttpClient http, string token, Caller caller, string view, bool measured, LiveProbes probes, CountdownEvent first, SemaphoreSlim gate, CancellationToken stop)
    {
        // The stream is open once its first event came (or it failed): the next one may open.
        var released = false;
        void Release()
        {
            if (!released)
            {
                released = true;
                first.Signal();
                gate.Release();
            }
        }

        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/dashboards/live?view={view}");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stop);
            response.EnsureSuccessStatusCode();
            await using var body = await response.Content.ReadAsStreamAsync(stop);
            if (!measured)
            {
                var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
                try
                {
                    int read;
                    while ((read = await body.ReadAsync(buffer, stop)) > 0)
                    {
                        var events = Count(buffer.AsSpan(0, read));
                        if (events > 0)
                        {
                            Release();
                        }

                        probes.Counted(events);
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }

                return;
            }

            using var lines = new StreamReader(body, Encoding.UTF8);
            while (await lines.ReadLineAsync(stop) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    continue;
                }

                probes.Counted(1);
                var seenAt = Stopwatch.GetTimestamp();
                using var json = JsonDocument.Parse(line.AsMemory(6));
                var data = json.RootElement.GetProperty("data");
                if (view == AdminView)
                {
                    probes.SiteShows(caller.SiteId, data.GetProperty("orders_by_status").GetProperty("total").GetInt64(), seenAt);
                }
                else
                {
                    probes.ClientShows(caller.UserId, data.GetProperty("summary").GetProperty("last_order_id") is { ValueKind: JsonValueKind.Number } last ? last.GetInt64() : 0, seenAt);
                }

                Release();
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        catch (Exception) when (!released)
        {
            probes.StreamFailed();
            Release();
        }
    }

    // Events in a chunk of the stream: each starts with an "event:" line (a chunk boundary may split one; over a
    // run the count is exact to within one per chunk split, which only the report's events/s uses).
    private static int Count(ReadOnlySpan<byte> chunk)
    {
        var count = 0;
        int at;
        while ((at = chunk.IndexOf("event: "u8)) >= 0)
        {
            count++;
            chunk = chunk[(at + 7)..];
        }

        return count;
    }

    /// <summary>What the measured streams saw: each write's commit time, and when the first stream showed it.</summary>
    private sealed class LiveProbes(List<Caller> clients, List<long> sites)
    {
        private long _events;
        private long _failedStreams;

        private readonly ConcurrentDictionary<long, ConcurrentQueue<(long OrderId, long CommittedAt, TaskCompletionSource<double> Seen)>> _clientWrites =
            new(clients.Select(c => KeyValuePair.Create(c.UserId, new ConcurrentQueue<(long, long, TaskCompletionSource<double>)>())));

        private readonly ConcurrentBag<Task<double>> _clientSeen = [];
        private readonly ConcurrentDictionary<long, List<double>> _adminLatencies = new(sites.Select(s => KeyValuePair.Create(s, new List<double>())));
        private Dictionary<long, long> _ordersBefore = [];

        /// <summary>The writer's queue of each site's writes (sequence in the site, commit time).</summary>
        public Dictionary<long, ConcurrentQueue<(long Sequence, long CommittedAt)>> SiteWrites { get; } =
            sites.ToDictionary(s => s, _ => new ConcurrentQueue<(long Sequence, long CommittedAt)>());

        public long Events => Interlocked.Read(ref _events);

        public long Failed => Interlocked.Read(ref _failedStreams);

        public void Start(Dictionary<long, long> ordersBefore) => _ordersBefore = ordersBefore;

        public void Counted(int events) => Interlocked.Add(ref _events, events);

        public void StreamFailed() => Interlocked.Increment(ref _failedStreams);

        /// <summary>The writer's probe: a write to client number <paramref name="index"/>, seen when one of its streams shows it.</summary>
        public Task<double> Expect(int index, long orderId, long committedAt)
        {
            var seen = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
            _clientWrites[clients[index].UserId].Enqueue((orderId, committedAt, seen));
            _clientSeen.Add(seen.Task);
            return seen.Task;
        }

        public void ClientShows(long client, long lastOrderId, long seenAt)
        {
            if (!_clientWrites.TryGetValue(client, out var writes))
            {
                return;
            }

            while (writes.TryPeek(out var write) && write.OrderId <= lastOrderId && writes.TryDequeue(out write))
            {
                write.Seen.TrySetResult(Stopwatch.GetElapsedTime(write.CommittedAt, seenAt).TotalSeconds);
            }
        }

        public void SiteShows(long site, long orders, long seenAt)
        {
            if (!SiteWrites.TryGetValue(site, out var writes) || !_ordersBefore.TryGetValue(site, out var before))
            {
                return;
            }

            var latencies = _adminLatencies[site];
            lock (latencies)
            {
                while (writes.TryPeek(out var write) && before + write.Sequence <= orders && writes.TryDequeue(out write))
                {
                    latencies.Add(Stopwatch.GetElapsedTime(write.CommittedAt, seenAt).TotalSeconds);
                }
            }
        }

        /// <summary>Waits up to <paramref name="within"/> for the writes not yet shown; those still unseen count as +∞.</summary>
        public async Task SettleAsync(TimeSpan within)
        {
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < within && (_clientWrites.Values.Any(q => !q.IsEmpty) || SiteWrites.Values.Any(q => !q.IsEmpty)))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50));
            }

            foreach (var writes in _clientWrites.Values)
            {
                while (writes.TryDequeue(out var write))
                {
                    write.Seen.TrySetResult(double.PositiveInfinity);
                }
            }
        }

        public List<double> ClientLatencies() => [.. _clientSeen.Select(t => t.Result)];

        public List<double> AdminLatencies() =>
            [.. _adminLatencies.Values.SelectMany(l => l), .. SiteWrites.Values.SelectMany(q => q.Select(_ => double.PositiveInfinity))];
    }
}
