namespace StatsCache.Source;

/// <summary>Why a load runs, which decides how fresh its data must be (see <see cref="LoadFence"/>).</summary>
public enum LoadReason
{
    /// <summary>
    /// A read asked for it (an entry's first load, a forced refresh, a snapshot restored from storage) or a change without a
    /// WAL position (the triggers' notices, the invalidation API): it must include every write committed on the primary
    /// before it started.
    /// </summary>
    Current,

    /// <summary>The change feed announced a change: it must include the change's commit (<see cref="LoadFence.Lsn"/>).</summary>
    Change,

    /// <summary>The TTL is up: a replica behind the primary by at most <see cref="SourceOptions.MaxReplicaLag"/> will do.</summary>
    Refresh,
}

/// <summary>
/// What a load must include: never data older than <see cref="Lsn"/> (a WAL position: the change's commit, or the snapshot
/// the load replaces), and per <see cref="Reason"/> more.
/// </summary>
public readonly record struct LoadFence(LoadReason Reason, ulong Lsn)
{
    /// <summary>Everything committed on the primary before now (what a load on the primary always includes).</summary>
    public static LoadFence Current(ulong atLeast = 0) => new(LoadReason.Current, atLeast);
}

/// <summary>A load's data (the view's <c>data</c> object as UTF-8 JSON), and the WAL position it is known to include (0: unknown).</summary>
public sealed record SourceData(byte[] Data, ulong Lsn);
