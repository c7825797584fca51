using System.Diagnostics.Metrics;
using StatsCache.Cache;
using StatsCache.Source;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Hosting;
using StatsCache.WebHost.Live;
using StatsCache.WebHost.NearCache;
using ZiggyCreatures.Caching.Fusion;

namespace StatsCache.Benchmarks;

/// <summary>
/// The benchmark host: the production building blocks (JWT authentication, Orleans co-hosted or as a
/// client, the dashboard API, health checks, and the metrics every request records) composed as src/WebHost
/// composes them, plus the contenders' endpoints under <c>/bench</c>. The production web host carries none of
/// this. The contenders in this process (FusionCache, no cache) pay the per-request metrics src/WebHost pays, so
/// they are compared like for like with the real web host, which hit runs for StatsCache.
/// </summary>
public static class BenchHost
{
    public static async Task<int> RunAsync(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);
        builder.AddStatsCacheAuthentication();
        builder.AddStatsCacheOrleans();
        builder.AddStatsCacheHealthChecks();
        builder.AddStatsCacheObservability();
        builder.AddStatsCacheRequestLimits();
        builder.AddStatsCacheNearCache();
        builder.AddStatsCacheLive();
        builder.AddDashboardApi();

        builder.Services.AddSingleton<BenchCounters>();
        builder.Services.AddSingleton<FusionContender>();
        builder.Services.AddFusionCache();

        var app = builder.Build();
        app.Services.GetRequiredService<BenchCounters>(); // listen before the first request
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseStatsCacheRequestMetrics();
        app.UseStatsCachePage();
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseStatsCacheRequestLimits();
        app.MapStatsCacheHealthChecks();
        app.MapStatsCacheMetrics();
        app.MapDashboardApi();
        app.MapContenders();
        app.MapGet("/bench/counters", (BenchCounters counters) => TypedResults.Ok(counters.Snapshot()));
        app.MapGet("/bench/memory", () =>
        {
            var (heap, workingSet) = BenchMemory.Measure();
            return TypedResults.Ok(new Dictionary<string, long> { ["heap"] = heap, ["workingSet"] = workingSet });
        });
        await app.RunAsync();
        return 0;
    }
}

/// <summary>
/// Counts what each contender asked of the database in this process: the <c>StatsCache</c> meter's
/// instruments (co-hosted silo) and the contenders' own source calls. Only instruments that count
/// loads are listened to: a listener on every read would slow the hit scenario down.
/// </summary>
public sealed class BenchCounters : IDisposable
{
    public const string NoCacheLoads = "nocache.loads";
    public const string FusionLoads = "fusion.loads";

    /// <summary>Bytes this process has allocated since it started (<see cref="GC.GetTotalAllocatedBytes"/>): a hit's cost in garbage.</summary>
    public const string AllocatedBytes = "process.allocated_bytes";

    private readonly MeterListener _listener = new();
    private readonly Dictionary<string, long> _totals = new(StringComparer.Ordinal)
    {
        ["statscache.loads"] = 0,
        ["statscache.loads.joined"] = 0,
        [NoCacheLoads] = 0,
        [FusionLoads] = 0,
    };

    public BenchCounters()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == DashboardMetrics.MeterName && _totals.ContainsKey(instrument.Name))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => Add(instrument.Name, value));
        _listener.Start();
    }

    public void Add(string name, long value)
    {
        lock (_totals)
        {
            _totals[name] += value;
        }
    }

    public Dictionary<string, long> Snapshot()
    {
        lock (_totals)
        {
            return new Dictionary<string, long>(_totals, StringComparer.Ordinal) { [AllocatedBytes] = GC.GetTotalAllocatedBytes() };
        }
    }

    public void Dispose() => _listener.Dispose();
}

/// <summary>This process's memory after full, compacting collections: its GC heap and its working set, in bytes.</summary>
public static class BenchMemory
{
    public static (long Heap, long WorkingSet) Measure()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return (GC.GetTotalMemory(forceFullCollection: true), process.WorkingSet64);
    }
}
