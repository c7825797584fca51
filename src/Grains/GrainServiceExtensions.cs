using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using StatsCache.Cache;

namespace StatsCache;

/// <summary>The services the dashboard grains take; the hosts add the source, storage and clustering (src/Silo).</summary>
public static class GrainServiceExtensions
{
    /// <summary>The connection string (<c>ConnectionStrings:Stats</c>) of the database the views read and the change feed listens to.</summary>
    public const string StatsConnectionName = "Stats";

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
        services.TryAddSingleton<DashboardGrains>();
        services.TryAddSingleton<WatcherHeartbeats>();
        services.AddHostedService(static services => services.GetRequiredService<WatcherHeartbeats>());
        return services;
    }
}
