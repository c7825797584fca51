using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using StatsCache.Cache;
using StatsCache.Catalog;
using StatsCache.Hosting;
using StatsCache.Source;

namespace StatsCache.Benchmarks;

/// <summary>
/// The <c>refresh</c> scenario, in a process of its own: one silo (the shipped silo configuration) whose
/// grains hold <c>Bench:Entries</c> active entries with a short TTL (the driver's refresh catalog). The
/// source is counted and answers at once with one shared real payload, so what is measured is the cache's
/// own cost: memory per entry with the payload excluded (every entry shares the same bytes), and the
/// timer refreshes per second over two TTLs (a real database cannot take 10,000 loads a second on two
/// cores, and would measure itself instead of the timers' spread).
/// </summary>
public static class RefreshScenario
{
    public const string EntriesKey = "Bench:Entries";
    public const string PayloadPathKey = "Bench:PayloadPath";

    /// <summary>Entries created before the baseline is taken (JIT, pools, first activations), and counted among the active ones.</summary>
    private const int WarmEntries = 1_000;

    public static async Task<int> RunChildAsync(string[] args)
    {
        var builder = Host.CreateApplicationBuilder(args);
        var entries = builder.Configuration.GetValue(EntriesKey, 100_000);
        var source = new CountingSource(File.ReadAllBytes(builder.Configuration[PayloadPathKey]
            ?? throw new InvalidOperationException($"{PayloadPathKey} is not set.")));
        // The scenario reads each entry once: keep them refreshing for the whole window (the default drops an entry unread for 3 TTLs).
        builder.Configuration["StatsCache:Cache:IdleTtlMultiple"] = "1000";
        builder.UseOrleans(silo =>
        {
            silo.AddStatsCacheSilo(builder.Configuration);
            silo.Services.AddSingleton<IDashboardSource>(source);
        });

        // statscache.entries (the entries active grains hold), to check that every entry is still there.
        var activeEntries = new StrongBox<long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DashboardMetrics.MeterName && instrument.Name == "statscache.entries")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref activeEntries.Value, value));
        listener.Start();

        using var host = builder.Build();
        await host.StartAsync();
        var grains = host.Services.GetRequiredService<DashboardGrains>();
        var view = host.Services.GetRequiredService<DashboardCatalog>().Find(Driver.HitView)!;
        var request = new DashboardRequest(view.Name, view.DefaultParameters.Key);

        async Task CreateAsync(int from, int to) =>
            await Parallel.ForEachAsync(Enumerable.Range(from, to - from), new ParallelOptions { MaxDegreeOfParallelism = 256 }, async (user, ct) =>
            {
                var result = await grains.User(1, "client", user + 1).GetAsync(request, ct);
                if (result.Snapshot is null)
                {
                    throw new InvalidOperationException("An entry has no snapshot after its first read.");
                }
            });

        await CreateAsync(0, WarmEntries);
        var (heapBefore, workingSetBefore) = BenchMemory.Measure();
        var created = Stopwatch.StartNew();
        await CreateAsync(WarmEntries, entries);
        var createSeconds = created.Elapsed.TotalSeconds;
        var loadsWhileCreating = source.Loads;
        if (activeEntries.Value != entries)
        {
            throw new InvalidOperationException($"Expected {entries} active entries, the StatsCache meter says {activeEntries.Value}.");
        }

        // Source queries per second over two TTLs, from the end of the creation on.
        var ttl = view.Ttl;
        var perSecond = new List<long>();
        using (var timer = new PeriodicTimer(TimeSpan.FromSeconds(1)))
        {
            var last = source.Loads;
            for (var second = 0; second < 2 * ttl.TotalSeconds; second++)
            {
                await timer.WaitForNextTickAsync();
                var now = source.Loads;
                perSecond.Add(now - last);
                last = now;
            }
        }

        var (heapAfter, workingSetAfter) = BenchMemory.Measure();
        if (activeEntries.Value != entries)
        {
            throw new InvalidOperationException($"Expected {entries} active entries after the window, the StatsCache meter says {activeEntries.Value}.");
        }

        var measured = entries - WarmEntries;
        var average = perSecond.Average();
        var result = new JsonObject
        {
            ["entries"] = entries,
            ["ttlSeconds"] = ttl.TotalSeconds,
            ["createSeconds"] = Math.Round(createSeconds, 2),
            ["loadsWhileCreating"] = loadsWhileCreating,
            ["payloadBytes"] = source.PayloadBytes,
            ["heapBytesPerEntry"] = Math.Round((heapAfter - heapBefore) / (double)measured),
            ["workingSetBytesPerEntry"] = Math.Round((workingSetAfter - workingSetBefore) / (double)measured),
            ["averageLoadsPerSecond"] = Math.Round(average, 1),
            ["busiestLoadsPerSecond"] = perSecond.Max(),
            ["loadsPerSecond"] = new JsonArray([.. perSecond.Select(n => (JsonNode)n)]),
        };
        Console.WriteLine("BENCH_JSON " + result.ToJsonString());
        await host.StopAsync();
        return 0;
    }

    /// <summary>Counts loads and answers every one with the same bytes.</summary>
    private sealed class CountingSource(byte[] payload) : IDashboardSource
    {
        private long _loads;

        public long Loads => Interlocked.Read(ref _loads);

        public int PayloadBytes => payload.Length;

        public Task<SourceData> LoadAsync(ViewDefinition view, DashboardScope scope, BoundParameters parameters, LoadFence fence, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _loads);
            return Task.FromResult(new SourceData(payload, Lsn: 0));
        }
    }
}
