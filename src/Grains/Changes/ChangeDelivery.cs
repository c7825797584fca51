using Microsoft.Extensions.Logging;

namespace StatsCache.Changes;

/// <summary>
/// Delivers the change feed's batches from the silo holding the slot to every active silo's <see cref="IChangeRouter"/>,
/// each silo on its own: a slow or unreachable silo holds up nobody else, and what it has not received yet is coalesced
/// (bounded, see <see cref="ChangeSet"/>) until it answers or leaves the cluster. <see cref="Confirmable"/> is the WAL
/// position every silo has received: only that may be confirmed to PostgreSQL.
/// </summary>
public sealed partial class ChangeDelivery(ChangeRouters routers, IClusterMembershipService membership, ILogger logger)
{
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(2);

    private readonly Lock _lock = new();
    private readonly Dictionary<SiloAddress, Target> _targets = [];
    private readonly CancellationTokenSource _stopping = new();
    private MembershipVersion _seenVersion = MembershipVersion.MinValue;

    // The end of the last commit handed over: every silo that has received all it was given is at least there.
    private ulong _handedOver;

    /// <summary>Hands a batch (whose <see cref="ChangeBatch.Lsn"/> ends a commit) to every active silo.</summary>
    public void Enqueue(ChangeBatch batch)
    {
        lock (_lock)
        {
            UpdateTargets();
            foreach (var target in _targets.Values)
            {
                target.Add(batch);
                if (!target.Sending)
                {
                    target.Sending = true;
                    _ = SendAsync(target);
                }
            }

            _handedOver = Math.Max(_handedOver, batch.Lsn);
        }
    }

    /// <summary>A commit whose changes concern no entry ended at <paramref name="lsn"/>.</summary>
    public void Advance(ulong lsn)
    {
        lock (_lock)
        {
            _handedOver = Math.Max(_handedOver, lsn);
        }
    }

    /// <summary>Whether every silo has received everything handed over.</summary>
    public bool IsIdle
    {
        get
        {
            lock (_lock)
            {
                return _targets.Values.All(t => t.IsCaughtUp);
            }
        }
    }

    /// <summary>The WAL position up to which every active silo has received every change.</summary>
    public ulong Confirmable
    {
        get
        {
            lock (_lock)
            {
                var confirmable = _handedOver;
                foreach (var target in _targets.Values)
                {
                    if (!target.IsCaughtUp)
                    {
                        confirmable = Math.Min(confirmable, target.Delivered);
                    }
                }

                return confirmable;
            }
        }
    }

    /// <summary>Stops retrying; batches not delivered stay unconfirmed, so the next holder of the slot delivers them again.</summary>
    public void Stop() => _stopping.Cancel();

    // Under _lock. A silo that joined gets what comes from now on (its grains activated after the changes before, and
    // loaded after them); a silo that left the cluster gets nothing more.
    private void UpdateTargets()
    {
        var snapshot = membership.CurrentSnapshot;
        if (snapshot.Version == _seenVersion)
        {
            return;
        }

        _seenVersion = snapshot.Version;
        foreach (var member in snapshot.Members.Values)
        {
            if (member.Status == SiloStatus.Active && !_targets.ContainsKey(member.SiloAddress))
            {
                _targets[member.SiloAddress] = new Target(member.SiloAddress, _handedOver);
            }
        }

        foreach (var silo in _targets.Keys.Where(s => snapshot.GetSiloStatus(s) is not SiloStatus.Active).ToList())
        {
            _targets.Remove(silo);
        }
    }

    private async Task SendAsync(Target target)
    {
        var failures = 0;
        while (true)
        {
            ChangeBatch batch;
            lock (_lock)
            {
                if (!_targets.ContainsKey(target.Silo) || target.TakePending() is not { } pending)
                {
                    target.Sending = false;
                    return;
                }

                batch = pending;
            }

            try
            {
                await routers.On(target.Silo).DeliverAsync(batch);
                failures = 0;
                lock (_lock)
                {
                    target.Delivered = Math.Max(target.Delivered, batch.Lsn);
                }
            }
            catch (Exception e)
            {
                failures++;
                lock (_lock)
                {
                    target.Add(batch); // again, with whatever came meanwhile
                    _seenVersion = MembershipVersion.MinValue; // a silo that died is dropped at the next look
                    UpdateTargets();
                }

                LogDeliveryFailed(logger, e, target.Silo, failures);
                var delay = TimeSpan.FromMilliseconds(100 * Math.Pow(2, Math.Min(failures - 1, 5)));
                try
                {
                    await Task.Delay(delay < MaxRetryDelay ? delay : MaxRetryDelay, _stopping.Token);
                }
                catch (OperationCanceledException)
                {
                    lock (_lock)
                    {
                        target.Sending = false;
                    }

                    return;
                }
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Delivering changes to silo {Silo} failed (attempt {Attempt}); retrying while it is in the cluster")]
    private static partial void LogDeliveryFailed(ILogger logger, Exception exception, SiloAddress silo, int attempt);

    private sealed class Target(SiloAddress silo, ulong delivered)
    {
        private ChangeSet? _pending;
        private ChangeBatch? _single;

        public SiloAddress Silo { get; } = silo;

        /// <summary>The end of the last commit whose changes this silo received.</summary>
        public ulong Delivered { get; set; } = delivered;

        public bool Sending { get; set; }

        public bool IsCaughtUp => !Sending && _single is null && _pending is null;

        // Usually one batch waits and is sent as it is; while the silo is busy or unreachable, the next ones coalesce.
        public void Add(ChangeBatch batch)
        {
            if (_single is null && _pending is null)
            {
                _single = batch;
                return;
            }

            if (_pending is null)
            {
                _pending = new ChangeSet();
                _pending.Add(_single!);
                _single = null;
            }

            _pending.Add(batch);
        }

        public ChangeBatch? TakePending()
        {
            var batch = _single ?? _pending?.TakeBatch();
            _single = null;
            _pending = null;
            return batch;
        }
    }
}
