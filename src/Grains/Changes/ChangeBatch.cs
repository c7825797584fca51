using System.Collections.Immutable;

namespace StatsCache.Changes;

/// <summary>
/// Changes on their way to the silos, coalesced (see <see cref="ChangeSet"/>): the notices, the tables changed on every site
/// (a <c>TRUNCATE</c>, or too many sites to list), and whether every active entry must refresh (a slot that lost changes).
/// <see cref="Lsn"/>: every transaction committed up to this WAL position is in the batch or in one delivered before it, so
/// a load started after the batch arrived sees all of them.
/// </summary>
[GenerateSerializer, Immutable, Alias("statscache.ChangeBatch")]
public sealed record ChangeBatch(
    [property: Id(0)] ImmutableArray<ChangeNotice> Notices,
    [property: Id(1)] ImmutableArray<string> TablesOfEverySite,
    [property: Id(2)] bool RefreshAll,
    [property: Id(3)] ulong Lsn)
{
    /// <summary>One notice, as the <see cref="ChangeSource.Notify"/> source hears them (no LSN).</summary>
    public static ChangeBatch Of(ChangeNotice notice) => new([notice], [], RefreshAll: false, Lsn: 0);

    /// <summary>Every active entry refreshes: changes may have been missed.</summary>
    public static ChangeBatch Everything(ulong lsn) => new([], [], RefreshAll: true, lsn);
}
