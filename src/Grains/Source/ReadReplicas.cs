using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace StatsCache.Source;

/// <summary>The server a load runs on, and the WAL position its data is known to include (read before the load started).</summary>
public readonly record struct LoadTarget(string Name, NpgsqlDataSource DataSource, ulong Lsn, bool IsReplica);

/// <summary>
/// Picks the server for each load (<see cref="ChooseAsync"/>): a replica that has replayed what the load's fence needs, spread
/// over the replicas; waiting up to <see cref="SourceOptions.ReplicaWaitTimeout"/> for one that has not yet; otherwise the
/// primary. Reads each server's WAL position every <see cref="SourceOptions.ReplicaCheckInterval"/> (and when a load asks), for
/// the fences, the lag and the replicas' health.
/// </summary>
public sealed partial class ReadReplicas : BackgroundService
{
    // How often a load waiting for a replica asks for its position again (reads are shared by every waiting load).
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(10);

    // The primary's positions over this long are kept, to tell how many seconds a replica is behind.
    private static readonly TimeSpan HistoryLength = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan HistorySpacing = TimeSpan.FromMilliseconds(100);

    private readonly NpgsqlDataSource _primaryDataSource;
    private readonly WalPositionProbe _primary;
    private readonly Replica[] _replicas;
    private readonly SourceOptions _options;
    private readonly SourceMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _historyLock = new();
    private readonly List<WalPosition> _history = [];
    private int _turn;

    public ReadReplicas(StatsDatabases databases, IOptions<SourceOptions> options, SourceMetrics metrics, TimeProvider time, ILogger<ReadReplicas> logger)
    {
        _primaryDataSource = databases.Primary;
        _primary = new WalPositionProbe(databases.Primary, isReplica: false, time, Remember);
        _replicas = [.. databases.Replicas.Select(r => new Replica(r, new WalPositionProbe(r.DataSource, isReplica: true, time)))];
        _options = options.Value;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        metrics.ObserveReplicas(ObserveLagBytes, ObserveLagSeconds, ObserveUp);
    }

    /// <summary>
    /// The server for a load with this fence. A replica must have replayed the fence's position; for a
    /// <see cref="LoadReason.Current"/> load also the primary's position as of now (read by a query sent now, shared with the
    /// other loads that ask meanwhile); and be behind the primary by at most <see cref="SourceOptions.MaxReplicaLag"/>.
    /// </summary>
    public async ValueTask<LoadTarget> ChooseAsync(LoadFence fence, CancellationToken cancellationToken)
    {
        var asked = _time.GetTimestamp();
        var required = fence.Lsn;
        if (fence.Reason == LoadReason.Current)
        {
            // The primary down: nothing newer than what it last said can be committed, as far as this silo can tell.
            var primary = await _primary.ReadAsync(asked).WaitAsync(cancellationToken).ConfigureAwait(false) ?? _primary.Latest;
            required = Math.Max(required, primary?.Lsn ?? 0);
        }

        var candidates = _replicas.Where(r => IsServing(r, asked)).ToArray();
        if (candidates.Length == 0)
        {
            return Primary(required, _replicas.Any(r => IsAnswering(r, asked)) ? "lagging" : "unavailable");
        }

        if (Ready(candidates, required) is { } ready)
        {
            return ready;
        }

        // Not replayed yet: wait, asking the candidates again, for one to reach the position (a replica that does not answer
        // holds up no load past the wait).
        while (_options.ReplicaWaitTimeout - _time.GetElapsedTime(asked) is var left && left > TimeSpan.Zero)
        {
            var now = _time.GetTimestamp();
            try
            {
                await Task.WhenAll(candidates.Select(r => r.Probe.ReadAsync(now))).WaitAsync(left, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                break;
            }

            if (Ready(candidates, required) is { } reached)
            {
                _metrics.FenceWaited(_time.GetElapsedTime(asked), reached: true);
                return reached;
            }

            await Task.Delay(PollInterval, _time, cancellationToken).ConfigureAwait(false);
        }

        _metrics.FenceWaited(_time.GetElapsedTime(asked), reached: false);
        return Primary(required, "timeout");
    }

    /// <summary>
    /// A load failed on a replica (the caller runs it on the primary instead). A replica that is down, shutting down or out of
    /// connections is skipped for <see cref="SourceOptions.ReplicaRetryDuration"/>; an error of the one query (a conflict
    /// with recovery, which cancels a standby's query now and then; the query's own error) costs only that load.
    /// </summary>
    public void LoadFailed(LoadTarget target, Exception exception)
    {
        _metrics.Fallback("failed");
        if (!IsServerDown(exception) || _replicas.FirstOrDefault(r => r.Server.Name == target.Name) is not { } replica)
        {
            return;
        }

        replica.OutUntil = _time.GetTimestamp() + (long)(_options.ReplicaRetryDuration.TotalSeconds * _time.TimestampFrequency);
        replica.Server.DataSource.Clear(); // its pooled connections are likely broken too
        if (replica.Serving)
        {
            replica.Serving = false;
            LogReplicaFailed(_logger, exception, replica.Server.Name, replica.Server.Address, _options.ReplicaRetryDuration);
        }
    }

    /// <summary>Reads every server's position each <see cref="SourceOptions.ReplicaCheckInterval"/>, and logs replicas leaving and rejoining.</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.ReplicaCheckInterval, _time);
        do
        {
            var now = _time.GetTimestamp();
            await _primary.ReadAsync(now).ConfigureAwait(false);
            await Task.WhenAll(_replicas.Select(r => r.Probe.ReadAsync(now))).ConfigureAwait(false);
            foreach (var replica in _replicas)
            {
                var serving = IsServing(replica, _time.GetTimestamp());
                if (serving == replica.Serving)
                {
                    continue;
                }

                replica.Serving = serving;
                if (serving)
                {
                    LogReplicaBack(_logger, replica.Server.Name, replica.Server.Address);
                }
                else if (replica.Probe.Failure is { } failure)
                {
                    LogReplicaFailed(_logger, failure, replica.Server.Name, replica.Server.Address, _options.ReplicaRetryDuration);
                }
                else
                {
                    LogReplicaLagging(_logger, replica.Server.Name, replica.Server.Address, Lag(replica, _time.GetTimestamp()), _options.MaxReplicaLag);
                }
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    // No answer at all (refused, broken, timed out), or PostgreSQL's own: connection exceptions (08), shutting down or
    // starting (57P01-57P03), out of resources such as connections (53).
    private static bool IsServerDown(Exception exception) => exception switch
    {
        PostgresException postgres => postgres.SqlState.StartsWith("08", StringComparison.Ordinal)
            || postgres.SqlState.StartsWith("57P", StringComparison.Ordinal)
            || postgres.SqlState.StartsWith("53", StringComparison.Ordinal),
        _ => exception is NpgsqlException or TimeoutException,
    };

    private LoadTarget? Ready(Replica[] candidates, ulong required)
    {
        var ready = candidates.Where(r => r.Probe.Latest is { } position && position.Lsn >= required).ToArray();
        if (ready.Length == 0)
        {
            return null;
        }

        var replica = ready[(int)((uint)Interlocked.Increment(ref _turn) % (uint)ready.Length)];
        return new LoadTarget(replica.Server.Name, replica.Server.DataSource, replica.Probe.Latest!.Value.Lsn, IsReplica: true);
    }

    private LoadTarget Primary(ulong required, string fallback)
    {
        _metrics.Fallback(fallback);
        return new LoadTarget("primary", _primaryDataSource, Math.Max(required, _primary.Latest?.Lsn ?? 0), IsReplica: false);
    }

    // Answers, is not skipped after a failure, and its position is recent (a hung replica's is not).
    private bool IsAnswering(Replica replica, long now) =>
        now >= replica.OutUntil
        && replica.Probe.Failure is null
        && replica.Probe.Latest is { } position
        && _time.GetElapsedTime(position.ReadAt, now) <= (_options.ReplicaCheckInterval * 3) + TimeSpan.FromSeconds(2);

    private bool IsServing(Replica replica, long now) => IsAnswering(replica, now) && Lag(replica, now) <= _options.MaxReplicaLag;

    /// <summary>
    /// How long ago the primary held nothing the replica has not replayed: zero when the replica has replayed the primary's
    /// newest known position (also while the primary does not answer: nothing newer can be known), else the time since the
    /// newest position of the primary the replica has reached was read (longer than the kept history: at least its length).
    /// </summary>
    private TimeSpan Lag(Replica replica, long now)
    {
        if (replica.Probe.Latest is not { } position)
        {
            return TimeSpan.MaxValue;
        }

        lock (_historyLock)
        {
            if (_history.Count == 0 || position.Lsn >= _history[^1].Lsn)
            {
                return TimeSpan.Zero;
            }

            // The primary's positions grow with time: the newest one at or below the replica's.
            var index = _history.FindLastIndex(p => p.Lsn <= position.Lsn);
            return _time.GetElapsedTime(index >= 0 ? _history[index].ReadAt : _history[0].ReadAt, now);
        }
    }

    private void Remember(WalPosition position)
    {
        lock (_historyLock)
        {
            if (_history.Count > 0 && _time.GetElapsedTime(_history[^1].ReadAt, position.ReadAt) < HistorySpacing)
            {
                if (position.Lsn > _history[^1].Lsn)
                {
                    _history[^1] = _history[^1] with { Lsn = position.Lsn }; // still read after that moment
                }

                return;
            }

            if (_history.Count > 0 && position.ReadAt < _history[^1].ReadAt)
            {
                return; // a slow read that an overlapping one overtook
            }

            _history.Add(position);
            var old = _history.FindIndex(p => _time.GetElapsedTime(p.ReadAt, position.ReadAt) <= HistoryLength);
            if (old > 0)
            {
                _history.RemoveRange(0, old);
            }
        }
    }

    private IEnumerable<Measurement<long>> ObserveLagBytes()
    {
        var primary = _primary.Latest?.Lsn ?? 0;
        foreach (var replica in _replicas)
        {
            if (replica.Probe.Latest is { } position && replica.Probe.Failure is null)
            {
                yield return new Measurement<long>(position.Lsn >= primary ? 0 : (long)(primary - position.Lsn), Tag(replica));
            }
        }
    }

    private IEnumerable<Measurement<double>> ObserveLagSeconds()
    {
        var now = _time.GetTimestamp();
        foreach (var replica in _replicas)
        {
            if (replica.Probe.Failure is null && Lag(replica, now) is var lag && lag != TimeSpan.MaxValue)
            {
                yield return new Measurement<double>(lag.TotalSeconds, Tag(replica));
            }
        }
    }

    private IEnumerable<Measurement<int>> ObserveUp()
    {
        var now = _time.GetTimestamp();
        foreach (var replica in _replicas)
        {
            yield return new Measurement<int>(IsServing(replica, now) ? 1 : 0, Tag(replica));
        }
    }

    private static KeyValuePair<string, object?> Tag(Replica replica) => new("replica", replica.Server.Name);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Read replica {Replica} ({Address}) is skipped: it failed. Loads run on the other replicas or the primary; it is checked again in {RetryIn}")]
    private static partial void LogReplicaFailed(ILogger logger, Exception exception, string replica, string address, TimeSpan retryIn);

    [LoggerMessage(Level = LogLevel.Information, Message = "Read replica {Replica} ({Address}) is skipped: {Lag} behind the primary, more than {MaxLag}")]
    private static partial void LogReplicaLagging(ILogger logger, string replica, string address, TimeSpan lag, TimeSpan maxLag);

    [LoggerMessage(Level = LogLevel.Information, Message = "Read replica {Replica} ({Address}) serves loads")]
    private static partial void LogReplicaBack(ILogger logger, string replica, string address);

    private sealed class Replica(ReplicaServer server, WalPositionProbe probe)
    {
        public ReplicaServer Server { get; } = server;

        public WalPositionProbe Probe { get; } = probe;

        /// <summary>Skipped until then (a timestamp) after a load on it failed.</summary>
        public long OutUntil { get; set; }

        /// <summary>Whether it served at the last check (for logging its changes only).</summary>
        public bool Serving { get; set; }
    }
}
