using Orleans.Runtime;

namespace StatsCache.WebHost.NearCache;

/// <summary>
/// The near-cache and the web host's one watcher reference, and what empties it: the client losing a gateway
/// (client mode) or a silo leaving the cluster (co-hosted), since the grains that pushed here reactivate elsewhere
/// without this watcher.
/// </summary>
public static class NearCacheExtensions
{
    public static WebApplicationBuilder AddStatsCacheNearCache(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<NearCacheOptions>().BindConfiguration(NearCacheOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<DashboardNearCache>();
        builder.Services.AddSingleton<DashboardWatcher>();
        builder.Services.AddSingleton<IClusterConnectionStatusObserver, ClearOnGatewayLoss>();
        builder.Services.AddHostedService<ClearOnSiloLoss>();
        return builder;
    }

    // Client mode: Orleans' client tells every registered observer when its gateways change.
    private sealed class ClearOnGatewayLoss(DashboardWatcher watcher) : IClusterConnectionStatusObserver
    {
        public void NotifyGatewayCountChanged(int currentNumberOfGateways, int previousNumberOfGateways, bool connectionRecovered)
        {
            if (currentNumberOfGateways < previousNumberOfGateways)
            {
                watcher.Lost();
            }
        }

        public void NotifyClusterConnectionLost() => watcher.Lost();
    }

    // Co-hosted: the silo's view of the membership table; a silo that stops being active took its grains' watchers along.
    private sealed class ClearOnSiloLoss(IServiceProvider services, DashboardWatcher watcher) : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            if (services.GetService<IClusterMembershipService>() is not { } membership)
            {
                return; // client mode: ClearOnGatewayLoss
            }

            var active = new HashSet<SiloAddress>();
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                var now = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress).ToHashSet();
                if (active.Any(silo => !now.Contains(silo)))
                {
                    watcher.Lost();
                }

                active = now;
            }
        }
    }
}
