using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;

namespace StatsCache.Cache;

/// <summary>
/// The silo's heartbeat to the web hosts' watchers its grains hold: every <see cref="IDashboardWatcher.HeartbeatPeriod"/>,
/// one <see cref="IDashboardWatcher.OnSiloAliveAsync"/> to each, while any watch lasts. It is what lets a web host's
/// near-cache trust a watched entry for minutes instead of asking the grain every few seconds: one message per web
/// host per second instead of a grain call per entry, and a silo that hangs (nobody declares it dead, its grains push
/// nothing) falls silent here too, so its entries stop being answered from memory within the web host's lease.
/// </summary>
public sealed class WatcherHeartbeats(ILocalSiloDetails silo, TimeProvider time) : BackgroundService
{
    // Each watcher with the end of the longest watch this silo's grains hold for it.
    private readonly ConcurrentDictionary<IDashboardWatcher, DateTimeOffset> _watchers = new();

    /// <summary>This silo, as its heartbeats and the answers of its grains to watching reads name it.</summary>
    public SiloAddress Silo => silo.SiloAddress;

    /// <summary>A grain of this silo holds <paramref name="watcher"/>'s watch until <paramref name="until"/>.</summary>
    internal void Watching(IDashboardWatcher watcher, DateTimeOffset until)
    {
        // Racing grains may lower the end a little: the web host then asks a grain again sooner, which renews it.
        if (!_watchers.TryGetValue(watcher, out var held) || held < until)
        {
            _watchers[watcher] = until;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(IDashboardWatcher.HeartbeatPeriod, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var now = time.GetUtcNow();
            foreach (var (watcher, until) in _watchers)
            {
                if (until <= now)
                {
                    // Gone only if no grain renewed it meanwhile.
                    _watchers.TryRemove(KeyValuePair.Create(watcher, until));
                    continue;
                }

                // One-way: a web host that is slow or gone holds up nobody's heartbeat.
                _ = watcher.OnSiloAliveAsync(silo.SiloAddress);
            }
        }
    }
}
