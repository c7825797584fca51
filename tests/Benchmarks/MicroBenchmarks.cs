using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using BenchmarkDotNet.Running;
using Microsoft.AspNetCore.Http.Features;
using StatsCache.Catalog;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Auth;

namespace StatsCache.Benchmarks;

/// <summary>
/// Micro-benchmarks of a cached read's work in the web host, outside the grain call:
/// <c>dotnet run -c Release --project tests/Benchmarks -- micro --filter '*'</c>.
/// </summary>
public static class MicroBenchmarks
{
    public static int Run(string[] args)
    {
        // In process: no per-benchmark project build (Orleans' code generation makes that slow and fragile).
        var config = DefaultConfig.Instance.AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance));
        BenchmarkSwitcher.FromAssembly(typeof(MicroBenchmarks).Assembly).Run(args, config);
        return 0;
    }
}

[MemoryDiagnoser]
public class CachedReadBenchmarks
{
    private DashboardCatalog _catalog = null!;
    private ViewDefinition _view = null!;
    private DashboardSnapshot _snapshot = null!;
    private Caller _caller = null!;

    [GlobalSetup]
    public void Setup()
    {
        _catalog = DashboardCatalog.Load(null);
        _view = _catalog.Find(Driver.HitView)!;
        var data = """{"summary":{"orders_total":71,"orders_pending":3,"orders_in_progress":5,"orders_completed":55,"orders_cancelled":6,"orders_refunded":2,"total_spent":10533.25,"average_order_value":148.36,"last_order_at":"2025-11-20T10:11:12.123456Z"}}"""u8.ToArray();
        _snapshot = new DashboardSnapshot(data, DateTimeOffset.UtcNow, "abcdefghijklmnopqrstuv");
        _caller = new Caller(7, "client", 6_301);
    }

    /// <summary>The checks and binding of a read (404/403/400) and the caller from the claims.</summary>
    [Benchmark]
    public string Resolve()
    {
        var context = new DefaultHttpContext();
        context.Features.Set(_caller); // as authentication leaves it
        DashboardApi.TryResolve(_view.Name, context, _catalog, out var read, out _);
        return read.Parameters.Key;
    }

    /// <summary>The envelope around the pre-serialised data, written to a response body.</summary>
    [Benchmark]
    public async Task<long> WriteSnapshot()
    {
        var context = new DefaultHttpContext();
        var body = new MemoryStream();
        context.Features.Set<IHttpResponseBodyFeature>(new StreamResponseBodyFeature(body));
        await new SnapshotResult(_caller, _view, _view.DefaultParameters, _snapshot, stale: false).ExecuteAsync(context);
        return body.Length;
    }

    /// <summary>The ETag and Cache-Control headers every cached read sets.</summary>
    [Benchmark]
    public bool Headers() => SnapshotResult.SetCacheHeaders(new DefaultHttpContext(), ViewAnswer.OpaqueTagOf(_snapshot, stale: false), TimeSpan.FromSeconds(297));
}
