using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Options;
using StatsCache.Catalog;
using StatsCache.Hosting;
using StatsCache.Source;
using StatsCache.WebHost.Api;

namespace StatsCache.Benchmarks;

/// <summary>
/// A cached read's grain call from a co-hosted web host, the part FusionCache does not have: with no
/// token, with a cancellable token (what the API passes), and through <c>GrainCalls.ReadAsync</c>
/// (retries while the cluster heals) as the API makes it. One hot grain, or 1,000 grains in turn.
/// </summary>
[MemoryDiagnoser]
public class GrainCallBenchmarks
{
    private IHost _host = null!;
    private IUserDashboardGrain[] _grains = null!;
    private DashboardRequest _request = null!;
    private ApiOptions _options = null!;
    private CancellationTokenSource _requestAborted = null!;
    private int _next;

    [Params(1, 1_000)]
    public int Grains { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration["ConnectionStrings:Stats"] = "Host=127.0.0.1;Database=unused"; // the source below never connects
        builder.Configuration["StatsCache:Changes:IsEnabled"] = "false"; // nor does anything else: no change feed
        builder.Configuration["Orleans:SiloPort"] = ChildProcess.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Configuration["Orleans:GatewayPort"] = ChildProcess.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseOrleans(silo =>
        {
            silo.AddStatsCacheSilo(builder.Configuration);
            silo.Services.AddSingleton<IDashboardSource>(new FixedSource());
        });
        _host = builder.Build();
        await _host.StartAsync();
        var view = _host.Services.GetRequiredService<DashboardCatalog>().Find(Driver.HitView)!;
        _request = new DashboardRequest(view.Name, view.DefaultParameters.Key);
        var references = _host.Services.GetRequiredService<DashboardGrains>();
        _grains = [.. Enumerable.Range(1, Grains).Select(i => references.User(1, "client", i))];
        foreach (var grain in _grains)
        {
            await grain.GetAsync(_request);
        }

        _options = new ApiOptions();
        _requestAborted = new CancellationTokenSource();
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
        _requestAborted.Dispose();
    }

    private IUserDashboardGrain Next() => _grains[_next++ % _grains.Length];

    [Benchmark(Baseline = true)]
    public ValueTask<DashboardResult> CallWithoutToken() => Next().GetAsync(_request);

    [Benchmark]
    public ValueTask<DashboardResult> CallWithCancellableToken() => Next().GetAsync(_request, _requestAborted.Token);

    [Benchmark]
    public Task<DashboardResult> CallThroughGrainCalls()
    {
        return GrainCalls.ReadAsync(static (call, ct) => call.Grain.GetAsync(call.Request, ct), (Grain: Next(), Request: _request), _options, _requestAborted.Token);
    }

    private sealed class FixedSource : IDashboardSource
    {
        private static readonly SourceData Payload = new("""{"summary":{"orders_total":71,"total_spent":10533.25}}"""u8.ToArray(), Lsn: 0);

        public Task<SourceData> LoadAsync(ViewDefinition view, DashboardScope scope, BoundParameters parameters, LoadFence fence, CancellationToken cancellationToken) =>
            Task.FromResult(Payload);
    }
}
