using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using StatsCache.Cache;
using StatsCache.Catalog;
using StatsCache.Source;

namespace StatsCache.Hosting;

/// <summary>Wiring shared by the silo host and the web host (which may co-host a silo).</summary>
public static class StatsCacheHostingExtensions
{
    public const string StatsConnectionName = "Stats";
    public const string CatalogPathKey = "StatsCache:CatalogPath";

    /// <summary>
    /// The catalog (loaded and validated now, so a bad one stops the process before it serves) and
    /// the shared <see cref="Npgsql.NpgsqlDataSource"/> of <c>ConnectionStrings:Stats</c>.
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
        services.TryAddSingleton(TimeProvider.System);
        return services;
    }

    /// <summary>A silo that hosts the dashboard grains: clustering, storage, the catalog and the PostgreSQL source.</summary>
    public static ISiloBuilder AddStatsCacheSilo(this ISiloBuilder silo, IConfiguration configuration)
    {
        var orleans = configuration.GetSection(OrleansHostingOptions.SectionName).Get<OrleansHostingOptions>() ?? new();
        silo.UseLocalhostClustering(orleans.SiloPort, orleans.GatewayPort, serviceId: orleans.ServiceId, clusterId: orleans.ClusterId);

        silo.AddMemoryGrainStorage(DashboardSnapshots.StorageName);
        silo.Services.AddStatsCacheData(configuration);
        silo.Services.AddSingleton<IDashboardSource, PostgresDashboardSource>();
        silo.Services.AddStatsCacheGrains();
        return silo;
    }

    /// <summary>The services the dashboard grains take, with validated cache options. Tests bring their own source.</summary>
    public static IServiceCollection AddStatsCacheGrains(this IServiceCollection services)
    {
        services.AddOptions<DashboardCacheOptions>()
            .BindConfiguration(DashboardCacheOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddMetrics();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<DashboardMetrics>();
        services.TryAddSingleton<DashboardCache>();
        return services;
    }
}
