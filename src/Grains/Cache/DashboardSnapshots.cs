namespace StatsCache.Cache;

/// <summary>
/// What a dashboard grain persists: the last snapshot of each entry, keyed <c>"{view}?{parameters}"</c>,
/// so a reactivated grain (after idle deactivation, or on another silo) answers at once.
/// </summary>
[GenerateSerializer, Alias("statscache.DashboardSnapshots")]
public sealed class DashboardSnapshots
{
    /// <summary>The grain storage provider the silo registers (memory on one machine).</summary>
    public const string StorageName = "snapshots";

    /// <summary>The state's name within that storage.</summary>
    public const string StateName = "dashboards";

    [Id(0)]
    public Dictionary<string, DashboardSnapshot> Entries { get; set; } = [];
}
