using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace StatsCache.Cache;

/// <summary>
/// The silo's heartbeat to the web hosts' watchers its grains hold: every <see cref="IDashboardWatcher.HeartbeatPeriod"/>,
/// one <see cref="IDashboardWatcher.OnSiloAliveAsync"/> to each, while any watch lasts. It is what lets a web host's
/// near-cache trust a watched entry for minutes instead of asking the grain every few seconds: one message per web
/// host per second instead of a grain call per entry, and a silo that hangs (nobody declares it dead, its grains push
/// nothing) falls silent here too, so its entries stop being answered from memory within the web host's lease.
/// A web host that stops answering heartbeats (it stopped, or hangs) gets none until it reads again.
/// From the moment the silo starts stopping (<see cref="IsSiloStopping"/>), neither heartbeats nor the grains' pushes are sent:
/// a watcher in this process (co-hosted) may be gone already, and a message to it then fails with an error in Orleans' own
/// log; a web host elsewhere stops trusting this silo's entries within its lease, or at once when it loses this gateway.
/// </summary>
public sealed partial class WatcherHeartbeats : BackgroundService
{
    // Heartbeats a web host may leave unanswered in a row before it gets no more: a few seconds of silence.
    private const int MaxMissed = 3;

    private readonly ConcurrentDictionary<IDashboardWatcher, Watch> _watchers = new();
    private readonly ILocalSiloDetails _silo;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly TimeProvider _time;
    private readonly ILogger<WatcherHeartbeats> _logger;

    public WatcherHeartbeats(ILocalSiloDetails silo, IHostApplicationLifetime lifetime, TimeProvider time, IMeterFactory meters, ILogger<WatcherHeartbeats> logger)
    {
        _silo = silo;
        _lifetime = lifetime;
        _time = time;
        _logger = logger;
        meters.Create(DashboardMetrics.MeterName).CreateObservableUpDownCounter(
            "statscache.watchers", () => _watchers.Count, "{watcher}", "Web host watchers this silo's grains hold, each sent a heartbeat a second.");
    }

    /// <summary>This silo, as its heartbeats and the answers of its grains to watching reads name it.</summary>
    public SiloAddress Silo => _silo.SiloAddress;

    /// <summary>The process is stopping: nothing more is sent to watchers.</summary>
    public bool IsSiloStopping => _lifetime.ApplicationStopping.IsCancellationRequested;

    /// <summary>A grain of this silo holds <paramref name="watcher"/>'s watch until <paramref name="until"/>.</summary>
    internal void Watching(IDashboardWatcher watcher, DateTimeOffset until) =>
        _watchers.GetOrAdd(watcher, static _ => new Watch()).Extend(until.UtcTicks);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(IDashboardWatcher.HeartbeatPeriod, _time);
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _lifetime.ApplicationStopping);
        while (await timer.WaitForNextTickAsync(stopping.Token))
        {
            var now = _time.GetUtcNow().UtcTicks;
            foreach (var (watcher, watch) in _watchers)
            {
                if (watch.Until <= now)
                {
                    // No grain holds it any more (a grain renewing it meanwhile makes a new one: it is heard from again).
                    _watchers.TryRemove(KeyValuePair.Create(watcher, watch));
                    continue;
                }

                // Not awaited one after another: a slow web host holds up nobody's heartbeat.
                _ = BeatAsync(watcher, watch);
            }
        }
    }

    private async Task BeatAsync(IDashboardWatcher watcher, Watch watch)
    {
        try
        {
            await watcher.OnSiloAliveAsync(_silo.SiloAddress);
            watch.Answered();
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            // Gone (its client left the cluster) or hung. Its near-cache stops trusting this silo's entries within its
            // lease, so its next read asks a grain, whose watch brings it back here.
            if (watch.Missed() == MaxMissed && _watchers.TryRemove(KeyValuePair.Create(watcher, watch)))
            {
                LogWatcherSilent(_logger, watcher.GetGrainId(), MaxMissed);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Watcher {Watcher} left {Missed} heartbeats unanswered: no more until it reads again")]
    private static partial void LogWatcherSilent(ILogger logger, GrainId watcher, int missed);

    /// <summary>One watcher's longest watch on this silo (UTC ticks) and its heartbeats unanswered in a row.</summary>
    private sealed class Watch
    {
        private long _until;
        private int _missed;

        public long Until => Volatile.Read(ref _until);

        public void Extend(long until) => Monotonic.Raise(ref _until, until);

        public void Answered() => Volatile.Write(ref _missed, 0);

        public int Missed() => Interlocked.Increment(ref _missed);
    }
}
