using System.Diagnostics.Metrics;
using StatsCache.Cache;

namespace StatsCache.Changes;

/// <summary>
/// The <see cref="ChangeSource.Replication"/> consumer's instruments (meter <c>StatsCache</c>). Only the silo holding the slot
/// reports the lag gauges; <c>statscache.changes.slot.held</c> is 1 on that silo and 0 on the others.
/// </summary>
public sealed class ChangeFeedMetrics
{
    private readonly Counter<long> _rows;
    private readonly Counter<long> _transactions;
    private readonly Counter<long> _takeovers;
    private readonly Counter<long> _slotInvalidations;
    private readonly Counter<long> _silentHolders;
    private long _lagBytes = -1;
    private double _lagSeconds = -1;
    private int _held;

    public ChangeFeedMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(DashboardMetrics.MeterName);
        _rows = meter.CreateCounter<long>("statscache.changes.rows", "{row}", "Row changes the change feed decoded from the WAL, by table.");
        _transactions = meter.CreateCounter<long>("statscache.changes.transactions", "{transaction}", "Committed transactions the feed received from the WAL (each wrote to a published table).");
        _takeovers = meter.CreateCounter<long>("statscache.changes.takeovers", "{takeover}", "Times this silo took the replication slot (at start, or after its holder died).");
        _slotInvalidations = meter.CreateCounter<long>(
            "statscache.changes.slot.invalidations", "{slot}", "Replication slots PostgreSQL had invalidated (WAL removed past max_slot_wal_keep_size), recreated with a refresh of every entry.");
        _silentHolders = meter.CreateCounter<long>(
            "statscache.changes.silent_holders", "{holder}", "Silent holders of the slot (hung, or cut off from PostgreSQL) whose WAL sender this silo ended to take the slot.");
        meter.CreateObservableGauge("statscache.changes.slot.held", () => Volatile.Read(ref _held), "{slot}", "1 on the silo streaming the replication slot, 0 on the others.");
        meter.CreateObservableGauge("statscache.changes.lag.bytes", ObserveLagBytes, "By", "WAL written since the position the feed confirmed (what the slot keeps), on the slot's silo.");
        meter.CreateObservableGauge("statscache.changes.lag.seconds", ObserveLagSeconds, "s", "Age of the oldest commit received but not yet delivered to every silo, on the slot's silo.");
    }

    public void Row(string table) => _rows.Add(1, new KeyValuePair<string, object?>("table", table));

    public void Transaction() => _transactions.Add(1);

    public void TookOver() => _takeovers.Add(1);

    public void SlotInvalidated() => _slotInvalidations.Add(1);

    public void SilentHolderEnded() => _silentHolders.Add(1);

    public void Holding(bool held)
    {
        Volatile.Write(ref _held, held ? 1 : 0);
        if (!held)
        {
            Interlocked.Exchange(ref _lagBytes, -1);
            Interlocked.Exchange(ref _lagSeconds, -1);
        }
    }

    public void LagBytes(long bytes) => Interlocked.Exchange(ref _lagBytes, bytes);

    public void LagSeconds(TimeSpan lag) => Interlocked.Exchange(ref _lagSeconds, lag.TotalSeconds);

    private IEnumerable<Measurement<long>> ObserveLagBytes() =>
        Interlocked.Read(ref _lagBytes) is >= 0 and var bytes ? [new Measurement<long>(bytes)] : [];

    private IEnumerable<Measurement<double>> ObserveLagSeconds() =>
        Volatile.Read(ref _lagSeconds) is >= 0 and var seconds ? [new Measurement<double>(seconds)] : [];
}
