using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Dashboard;
using Orleans.Serialization;
using Orleans.Storage;
using StatsCache.Cache;
using StatsCache.Catalog;
using StatsCache.Changes;
using StatsCache.Source;

namespace StatsCache.Hosting;

/// <summary>The silo's wiring (clustering, storage, Kubernetes, the Orleans Dashboard) and the client's, shared by the silo host and the web host (which may co-host a silo).</summary>
public static class StatsCacheHostingExtensions
{
    public const string StatsConnectionName = GrainServiceExtensions.StatsConnectionName;
    public const string OrleansConnectionName = "Orleans";

    /// <summary>The ADO.NET provider name under which the Orleans providers load Npgsql (by reflection: every process needs the Npgsql package).</summary>
    public const string AdoNetInvariant = "Npgsql";
    public const string CatalogPathKey = "StatsCache:CatalogPath";

    /// <summary>The log category under which Orleans' ADO.NET grain storage logs its connection string when it starts.</summary>
    public const string AdoNetStorageLogCategory = "Orleans.Storage.AdoNetGrainStorage";

    /// <summary>
    /// The catalog (loaded and validated now, so a bad one stops the process before it serves),
    /// the shared <see cref="Npgsql.NpgsqlDataSource"/> of <c>ConnectionStrings:Stats</c>, and its read replicas (<see cref="StatsDatabases"/>).
    /// </summary>
    public static IServiceCollection AddStatsCacheData(this IServiceCollection services, IConfiguration configuration)
    {
        if (services.Any(s => s.ServiceType == typeof(DashboardCatalog)))
        {
            return services;
        }

        services.AddSingleton(DashboardCatalog.Load(configuration[CatalogPathKey]));
        var connectionString = configuration.GetConnectionString(StatsConnectionName);
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new InvalidOperationException(
                $"ConnectionStrings:{StatsConnectionName} is not set (environment variable ConnectionStrings__{StatsConnectionName}).");
        }

        services.AddNpgsqlDataSource(connectionString);
        services.AddOptions<SourceOptions>().BindConfiguration(SourceOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<StatsDatabases>();
        services.TryAddSingleton(TimeProvider.System);
        return services;
    }

    /// <summary>A silo that hosts the dashboard grains: clustering, storage, the catalog and the PostgreSQL source.</summary>
    public static ISiloBuilder AddStatsCacheSilo(this ISiloBuilder silo, IConfiguration configuration)
    {
        var orleans = configuration.GetSection(OrleansHostingOptions.SectionName).Get<OrleansHostingOptions>() ?? new();
        if (orleans.Membership == OrleansMembership.AdoNet)
        {
            var connectionString = OrleansConnectionString(configuration);
            silo.UseAdoNetClustering(o =>
            {
                o.Invariant = AdoNetInvariant;
                o.ConnectionString = connectionString;
            });
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = orleans.ClusterId;
                o.ServiceId = orleans.ServiceId;
            });
            silo.Configure<EndpointOptions>(o =>
            {
                o.AdvertisedIPAddress = AdvertisedAddress(orleans);
                o.SiloPort = orleans.SiloPort;
                o.GatewayPort = orleans.GatewayPort;
            });

            // After Kubernetes hosting's own settings, so the pod's identity and address win.
            if (orleans.IsKubernetesHostingEnabled)
            {
                silo.UseKubernetesHosting();
            }
        }
        else
        {
            silo.UseLocalhostClustering(orleans.SiloPort, orleans.GatewayPort, serviceId: orleans.ServiceId, clusterId: orleans.ClusterId);
        }

        // Declare a dead silo dead in seconds, not the default tens of seconds: until then calls to its
        // grains are rejected (the web host retries them). Two missed probes of 2 s each; the votes
        // needed stay at Orleans' default (two, capped by Orleans at half the active silos: one of two silos
        // decides alone, which is why a cluster that must survive partitions has three).
        // No connection liveness check: it withholds a vote while the suspect's connection brought a message within
        // MaxProbeTimeout x NumMissedProbesLimit (16 s here), so a silo cut off from everything was voted dead after
        // 16 s instead of 3, its grains unreachable meanwhile (docs/faults.md, network faults).
        // The table read every 10 s, not every minute: a silo voted dead while cut off learns it within seconds of the heal
        // and rejoins (docs/cluster.md).
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            o.ProbeTimeout = TimeSpan.FromSeconds(2);
            o.NumMissedProbesLimit = 2;
            o.EnableConnectionLivenessCheck = false;
            o.TableRefreshTimeout = TimeSpan.FromSeconds(10);
        });

        // Every connection through a partition is dropped and made again, rather than left to TCP's back-off.
        silo.Services.AddUnacknowledgedDataTimeout(orleans);
        // A web host whose connection to a gateway died is forgotten by that gateway after 5 s, not a minute: until then
        // the gateway keeps the web host's answers for it, and the silos send them there, while the web host may come back
        // through another gateway (it did after a partition: answers expired unsent for 9 s after the heal).
        silo.Configure<SiloMessagingOptions>(o => o.ClientDropTimeout = orleans.DeadConnectionTimeout);
        silo.Configure<SiloConnectionOptions>(o =>
        {
            o.ConfigureSiloOutboundConnection(connection => connection.UseMiddleware<UnacknowledgedDataTimeout>());
            o.ConfigureSiloInboundConnection(connection => connection.UseMiddleware<UnacknowledgedDataTimeout>());
            o.ConfigureGatewayInboundConnection(connection => connection.UseMiddleware<UnacknowledgedDataTimeout>());
        });

        if (orleans.Storage == OrleansStorage.AdoNet)
        {
            var connectionString = OrleansConnectionString(configuration);
            silo.AddAdoNetGrainStorage(DashboardSnapshots.StorageName, options => options.Configure<Serializer>((o, serializer) =>
            {
                o.Invariant = AdoNetInvariant;
                o.ConnectionString = connectionString;
                // Orleans' own binary format, keyed by the [Alias]es of DashboardSnapshots and DashboardSnapshot,
                // instead of the default Newtonsoft JSON with CLR type names that a rename would break.
                o.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer);
            }));
        }
        else
        {
            silo.AddMemoryGrainStorage(DashboardSnapshots.StorageName);
        }

        // Orleans' ADO.NET storage logs its connection string at Information (password masked, host,
        // database and user not): keep that out at any configured level. More specific than any
        // 'Orleans' level in configuration, and added after it, so configuration cannot turn it back on.
        silo.Services.AddLogging(logging => logging.AddFilter(AdoNetStorageLogCategory, LogLevel.Warning));

        // A request's trace continues into the grains it calls (and the SQL they run) when traces are
        // exported. Only then: the propagation filters cost every grain call (about 5% of a cached
        // read's CPU in the hit benchmark) even when nothing listens.
        if (TelemetryExtensions.IsOtlpEnabled(configuration))
        {
            silo.AddActivityPropagation();
        }

        if (orleans.IsDashboardEnabled)
        {
            silo.AddDashboard();
        }

        silo.Services.AddStatsCacheData(configuration);
        silo.Services.AddSingleton<SourceMetrics>();
        if (configuration.GetSection(SourceOptions.SectionName).Get<SourceOptions>() is { Replicas.Count: > 0 })
        {
            silo.Services.AddSingleton<ReadReplicas>();
            silo.Services.AddHostedService(static services => services.GetRequiredService<ReadReplicas>());
        }

        silo.Services.AddSingleton<IDashboardSource, PostgresDashboardSource>();
        silo.Services.AddStatsCacheGrains();
        silo.Services.AddOptions<ChangeFeedOptions>().BindConfiguration(ChangeFeedOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        var changes = configuration.GetSection(ChangeFeedOptions.SectionName).Get<ChangeFeedOptions>() ?? new();
        if (changes.IsEnabled)
        {
            silo.Services.AddSingleton<ChangeDispatcher>();
            if (changes.Source == ChangeSource.Replication)
            {
                // Every silo receives what the slot's holder delivers, and competes for the slot.
                silo.AddGrainService<ChangeRouter>();
                silo.Services.AddSingleton<ChangeRouters>();
                silo.Services.AddSingleton<ChangeFeedMetrics>();
                silo.Services.AddHostedService<ReplicationChangeFeed>();
            }
            else
            {
                silo.Services.AddHostedService<NotifyChangeFeed>();
            }
        }

        return silo;
    }

    /// <summary>A client of the silo cluster: finds gateways the way the silos find each other.</summary>
    public static IClientBuilder AddStatsCacheClient(this IClientBuilder client, IConfiguration configuration)
    {
        var orleans = configuration.GetSection(OrleansHostingOptions.SectionName).Get<OrleansHostingOptions>() ?? new();
        if (orleans.Membership == OrleansMembership.AdoNet)
        {
            var connectionString = OrleansConnectionString(configuration);
            client.UseAdoNetClustering(o =>
            {
                o.Invariant = AdoNetInvariant;
                o.ConnectionString = connectionString;
            });
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = orleans.ClusterId;
                o.ServiceId = orleans.ServiceId;
            });

            // Find restarted or added silos' gateways within seconds, not the default minute.
            client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(5));
        }
        else
        {
            client.UseLocalhostClustering(orleans.GatewayPort, serviceId: orleans.ServiceId, clusterId: orleans.ClusterId);
        }

        // A gateway connection through a partition is dropped and made again, rather than left to TCP's back-off.
        client.Services.AddUnacknowledgedDataTimeout(orleans);
        client.Configure<ClientConnectionOptions>(o => o.ConfigureConnection(connection => connection.UseMiddleware<UnacknowledgedDataTimeout>()));

        if (TelemetryExtensions.IsOtlpEnabled(configuration))
        {
            client.AddActivityPropagation(); // as on the silos
        }

        if (orleans.IsDashboardEnabled)
        {
            client.AddDashboard(); // the silos add theirs (same switch): the pages read from them
        }

        client.Services.TryAddSingleton<DashboardGrains>();
        return client;
    }

    /// <summary>
    /// The database of cluster membership and grain storage: <c>ConnectionStrings:Orleans</c>, or
    /// <c>ConnectionStrings:Stats</c> when that is not set.
    /// </summary>
    public static string OrleansConnectionString(IConfiguration configuration) =>
        configuration.GetConnectionString(OrleansConnectionName) is { Length: > 0 } orleans ? orleans
        : configuration.GetConnectionString(StatsConnectionName) is { Length: > 0 } stats ? stats
        : throw new InvalidOperationException(
            $"Neither ConnectionStrings:{OrleansConnectionName} nor ConnectionStrings:{StatsConnectionName} is set " +
            $"(environment variables ConnectionStrings__{OrleansConnectionName}, ConnectionStrings__{StatsConnectionName}).");

    /// <summary>
    /// The TCP user timeout on every connection, and connection attempts of 2 s rather than Orleans' 5 s: through a partition
    /// each attempt waits out its timeout, so after the heal the next one that can succeed starts within 3 s (with the 1 s
    /// retry delay), not 6. Two seconds still allow a lost SYN to be sent again.
    /// </summary>
    private static void AddUnacknowledgedDataTimeout(this IServiceCollection services, OrleansHostingOptions orleans)
    {
        services.TryAddSingleton(sp => new UnacknowledgedDataTimeout(
            orleans.DeadConnectionTimeout, sp.GetRequiredService<ILogger<UnacknowledgedDataTimeout>>()));
        services.Configure<ConnectionOptions>(o => o.OpenConnectionTimeout = TimeSpan.FromSeconds(2));
    }

    private static IPAddress AdvertisedAddress(OrleansHostingOptions orleans)
    {
        if (IPAddress.TryParse(orleans.AdvertisedAddress, out var address))
        {
            return address;
        }

        try
        {
            return Dns.GetHostAddresses(orleans.AdvertisedAddress).FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
                ?? throw new InvalidOperationException($"Orleans:AdvertisedAddress '{orleans.AdvertisedAddress}' has no IPv4 address.");
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new InvalidOperationException($"Orleans:AdvertisedAddress '{orleans.AdvertisedAddress}' does not resolve: {e.Message}", e);
        }
    }
}
