using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using StatsCache.Cache;
using StatsCache.Catalog;
using StatsCache.Source;

namespace StatsCache.Grains.Tests;

/// <summary>One in-memory silo for all grain tests, with a test catalog and the counting source.</summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public const string Slow = "slow";       // TTL 5 minutes: no timer fires during a test
    public const string Fast = "fast";       // TTL 1 second
    public const string Idle = "idle";       // TTL 1 second, used only by the idle test
    public const string Shared = "shared";   // site-scoped, admin
    public const string Ranged = "ranged";   // TTL 5 minutes, parameter days 1..365 (default 30)
    public const string SharedRanged = "shared-ranged"; // site-scoped, admin, TTL 5 minutes, days 1..365 (default 30)

    private static readonly string CatalogJson = $$"""
        {
          "views": [
            { "name": "{{Slow}}", "roles": ["client", "writer"], "scope": "user", "ttl": "00:05:00",
              "queries": [ { "name": "q", "shape": "row", "sql": "select @user_id" } ] },
            { "name": "{{Fast}}", "roles": ["client"], "scope": "user", "ttl": "00:00:01",
              "queries": [ { "name": "q", "shape": "row", "sql": "select @user_id" } ] },
            { "name": "{{Idle}}", "roles": ["client"], "scope": "user", "ttl": "00:00:01",
              "queries": [ { "name": "q", "shape": "row", "sql": "select @user_id" } ] },
            { "name": "{{Shared}}", "roles": ["admin"], "scope": "site", "ttl": "00:05:00",
              "queries": [ { "name": "q", "shape": "row", "sql": "select @site_id" } ] },
            { "name": "{{Ranged}}", "roles": ["client"], "scope": "user", "ttl": "00:05:00",
              "parameters": [ { "name": "days", "type": "int", "default": 30, "min": 1, "max": 365 } ],
              "queries": [ { "name": "q", "shape": "rows", "sql": "select @days" } ] },
            { "name": "{{SharedRanged}}", "roles": ["admin"], "scope": "site", "ttl": "00:05:00",
              "parameters": [ { "name": "days", "type": "int", "default": 30, "min": 1, "max": 365 } ],
              "queries": [ { "name": "q", "shape": "rows", "sql": "select @days" } ] }
          ]
        }
        """;

    public static readonly TimeSpan ChangeDebounce = TimeSpan.FromMilliseconds(100);

    // Long enough that a test's reads right after a load stay within it on a busy machine, short enough to wait out.
    public static readonly TimeSpan MinRefreshInterval = TimeSpan.FromSeconds(2);

    // A caller may add this many entries at once; the budget then fills so slowly (one every 100 s) that no
    // token comes back during a test.
    public const int NewEntryBurst = 5;
    public const double NewEntriesPerSecond = 0.01;

    private static long s_nextSite = 1000;

    private InProcessTestCluster? _cluster;

    public static DashboardCatalog Catalog { get; } = DashboardCatalog.Parse(new MemoryStream(Encoding.UTF8.GetBytes(CatalogJson)), "test catalog");

    public FakeDashboardSource Source { get; } = new();

    public MetricsRecorder Metrics { get; } = new();

    public IClusterClient Client => _cluster!.Client;

    /// <summary>Deactivates a grain (its next call reactivates it from storage).</summary>
    public Task DeactivateAsync(IAddressable grain) => _cluster!.DeactivateAsync(grain);

    /// <summary>A site id no other test uses.</summary>
    public static long NewSite() => Interlocked.Increment(ref s_nextSite);

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddMemoryGrainStorage(DashboardSnapshots.StorageName);
            silo.Services.AddSingleton(Catalog);
            silo.Services.AddSingleton<IDashboardSource>(Source);
            silo.Services.AddStatsCacheGrains();
            silo.Services.Configure<DashboardCacheOptions>(o =>
            {
                o.RetryBaseDuration = TimeSpan.FromMilliseconds(100);
                o.RetryMaxDuration = TimeSpan.FromMilliseconds(200);
                o.MaxStaleDuration = TimeSpan.FromSeconds(3);
                o.IdleTtlMultiple = 2;
                o.MaxEntriesPerGrain = 3;
                o.LoadTimeout = TimeSpan.FromSeconds(20);
                o.ChangeDebounceDuration = ChangeDebounce;
                o.MinRefreshInterval = MinRefreshInterval;
                o.NewEntryBurst = NewEntryBurst;
                o.NewEntriesPerSecond = NewEntriesPerSecond;
            });
        });
        _cluster = builder.Build();
        await _cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        Metrics.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>
{
    public const string Name = "cluster";
}
