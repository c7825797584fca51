using System.Collections.Immutable;
using System.Globalization;
using Orleans.Concurrency;

namespace StatsCache;

/// <summary>The dashboards of one user in one role on one site, keyed <c>"{site}/{role}/{user}"</c>.</summary>
public interface IUserDashboardGrain : IGrainWithStringKey
{
    /// <summary>
    /// Returns the current snapshot of a view, loading it once if it is not cached. Cancelling stops
    /// this caller's wait, never the load, which other readers share.
    /// </summary>
    /// <remarks>
    /// A call caught in a silo's death would otherwise hang for Orleans' 30 s default; after
    /// <see cref="ReadTimeout"/> it fails with a <see cref="TimeoutException"/> and the web host sends it
    /// again (the retry joins a load in flight, so a slow load is not restarted). Orleans tracks this
    /// timeout for every call anyway, so it costs a read nothing, unlike a timer of the caller's own.
    /// </remarks>
    [ResponseTimeout(ReadTimeout)]
    ValueTask<DashboardResult> GetAsync(DashboardRequest request, CancellationToken cancellationToken = default);

    /// <summary>
    /// The data behind these views (all, when empty) changed, in transactions committed at or before WAL position
    /// <paramref name="lsn"/> (0: not known): reload the affected entries soon.
    /// </summary>
    [OneWay]
    Task InvalidateAsync(ImmutableArray<string> views, ulong lsn);

    /// <summary>How long one read may take before its caller abandons it and sends it again.</summary>
    public const string ReadTimeout = "00:00:03";
}

/// <summary>The site-scoped views of one site and role, keyed <c>"{site}/{role}"</c>; shared by its users.</summary>
public interface ISiteDashboardGrain : IGrainWithStringKey
{
    /// <summary>
    /// Returns the current snapshot of a site-scoped view, loading it once if it is not cached; cancelling stops the wait.
    /// Without <paramref name="mayAddEntry"/> (the caller's budget of new entries is spent) a read of an entry not
    /// cached is refused (<see cref="DashboardResult.Refused"/>).
    /// </summary>
    ValueTask<DashboardResult> GetAsync(DashboardRequest request, bool mayAddEntry, CancellationToken cancellationToken = default);

    /// <summary>
    /// The data behind these views (all, when empty) changed, in transactions committed at or before WAL position
    /// <paramref name="lsn"/> (0: not known): reload the affected entries soon.
    /// </summary>
    [OneWay]
    Task InvalidateAsync(ImmutableArray<string> views, ulong lsn);
}

/// <summary>
/// A read of one view with canonical parameters (see <see cref="Catalog.BoundParameters.Key"/>). With a
/// <see cref="Watcher"/>, the entry's grain also pushes to it every change of what this read would get, for
/// <see cref="WatchFor"/> from now (a lease the next read renews).
/// </summary>
[GenerateSerializer, Immutable, Alias("statscache.DashboardRequest")]
public sealed record DashboardRequest(
    [property: Id(0)] string View,
    [property: Id(1)] string Parameters,
    [property: Id(2)] bool Refresh = false,
    [property: Id(3)] IDashboardWatcher? Watcher = null,
    [property: Id(4)] TimeSpan WatchFor = default);

/// <summary>
/// The data of one view at one moment: the <c>data</c> object as UTF-8 JSON, and its content hash. <see cref="Lsn"/>: the WAL
/// position up to which the snapshot is known to include every committed change (0: not known): the changes the change feed
/// announced to its entry, and with read replicas the position of the server it was loaded from, read before the load. A later
/// load never stores a snapshot older than this (see <c>LoadFence</c>).
/// </summary>
[GenerateSerializer, Immutable, Alias("statscache.DashboardSnapshot")]
public sealed record DashboardSnapshot(
    [property: Id(0)] byte[] Data,
    [property: Id(1)] DateTimeOffset AsOf,
    [property: Id(2)] string ContentHash,
    [property: Id(3)] ulong Lsn = 0);

/// <summary>
/// The answer to a read: the snapshot, or none when nothing usable is cached (the caller answers 503),
/// and how long until the grain refreshes (or retries) it. A <see cref="Refused"/> read would have added an
/// entry (a load) past the caller's budget (the caller answers 429): <see cref="NextRefreshIn"/> is then how
/// long until the budget allows one again. <see cref="AddedEntry"/>: this read added the entry it read.
/// <see cref="Version"/> grows with every change of the entry's answer, across activations, so an older answer
/// or push never overwrites a newer one. <see cref="Silo"/>: the silo of the grain that answered a read that watched,
/// whose heartbeats (<see cref="IDashboardWatcher.OnSiloAliveAsync"/>) tell the watcher its pushes still come.
/// </summary>
[GenerateSerializer, Immutable, Alias("statscache.DashboardResult")]
public sealed record DashboardResult(
    [property: Id(0)] DashboardSnapshot? Snapshot,
    [property: Id(1)] bool Stale,
    [property: Id(2)] TimeSpan NextRefreshIn,
    [property: Id(3)] bool Refused = false,
    [property: Id(4)] bool AddedEntry = false,
    [property: Id(5)] long Version = 0,
    [property: Id(6)] SiloAddress? Silo = null);

/// <summary>
/// A web host's watcher of the entries its readers read (one per web host process): the grains push to it what a
/// reader of a watched entry would now get, so the web host can answer reads without a grain call.
/// </summary>
public interface IDashboardWatcher : IGrainObserver
{
    /// <summary>The entry's answer changed (<see cref="DashboardChange.Result"/>), or it is gone (null). Never awaited by the grain.</summary>
    [OneWay]
    Task OnChangedAsync(DashboardChange change);

    /// <summary>
    /// <paramref name="silo"/>, where grains hold this watcher, is alive: sent every <see cref="HeartbeatPeriod"/> while
    /// any of its grains does. A web host answers from memory only entries whose silo it heard from lately, so a silo
    /// that hangs without leaving the cluster stops being trusted within the web host's lease. Answered, unlike the
    /// pushes, so that the silo learns of a web host that is gone (or hangs) and stops beating at it.
    /// </summary>
    [ResponseTimeout("00:00:02")]
    Task OnSiloAliveAsync(SiloAddress silo);

    /// <summary>How often a silo tells each watcher its grains hold that it is alive.</summary>
    public static readonly TimeSpan HeartbeatPeriod = TimeSpan.FromSeconds(1);
}

/// <summary>
/// A change of one entry: whose (<see cref="Scope"/>: the user's for user-scoped views, the site's and role's for
/// site-scoped ones), which view and canonical parameters, and the answer a read would now get (null: the entry was
/// dropped or its grain deactivated; read it from the grain again).
/// </summary>
[GenerateSerializer, Immutable, Alias("statscache.DashboardChange")]
public sealed record DashboardChange(
    [property: Id(0)] DashboardScope Scope,
    [property: Id(1)] string View,
    [property: Id(2)] string Parameters,
    [property: Id(3)] DashboardResult? Result,
    [property: Id(4)] long Version);

/// <summary>Whose numbers a view's SQL computes: bound as <c>@site_id</c>, <c>@role</c> and <c>@user_id</c>.</summary>
[GenerateSerializer, Immutable, Alias("statscache.DashboardScope")]
public readonly record struct DashboardScope(
    [property: Id(0)] long SiteId,
    [property: Id(1)] string Role,
    [property: Id(2)] long? UserId)
{
    /// <summary>The key of a user's grain: <c>"{site}/{role}/{user}"</c>.</summary>
    public static string UserKey(long siteId, string role, long userId) =>
        string.Create(CultureInfo.InvariantCulture, $"{siteId}/{role}/{userId}");

    /// <summary>The key of a site's shared grain: <c>"{site}/{role}"</c>.</summary>
    public static string SiteKey(long siteId, string role) =>
        string.Create(CultureInfo.InvariantCulture, $"{siteId}/{role}");

    /// <summary>Parses a grain key made by <see cref="UserKey"/> (three parts) or <see cref="SiteKey"/> (two).</summary>
    public static DashboardScope Parse(string key)
    {
        var parts = key.Split('/');
        if (parts.Length is < 2 or > 3
            || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var site)
            || parts[1].Length == 0)
        {
            throw new ArgumentException($"'{key}' is not a dashboard grain key.", nameof(key));
        }

        if (parts.Length == 2)
        {
            return new DashboardScope(site, parts[1], null);
        }

        return long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var user)
            ? new DashboardScope(site, parts[1], user)
            : throw new ArgumentException($"'{key}' is not a dashboard grain key.", nameof(key));
    }
}
