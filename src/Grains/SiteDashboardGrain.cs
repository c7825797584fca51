using Orleans.Concurrency;
using StatsCache.Cache;
using StatsCache.Catalog;

namespace StatsCache;

/// <summary>
/// The site-scoped views of one site and role, computed once and shared by every user of that
/// site and role. Only <see cref="UserDashboardGrain"/> calls it, after checking the caller's role.
/// </summary>
[Reentrant] // Reads interleave with loads: concurrent readers of a cold entry join one load.
[GrainType(TypeName)]
public sealed class SiteDashboardGrain(
    [PersistentState(DashboardSnapshots.StateName, DashboardSnapshots.StorageName)] IPersistentState<DashboardSnapshots> store,
    DashboardCache cache) : DashboardGrain(store, cache), ISiteDashboardGrain
{
    // Orleans' default name for this class, declared so references can be made without resolving it (DashboardGrains).
    private const string TypeName = "sitedashboard";

    public static readonly GrainType GrainType = GrainType.Create(TypeName);

    protected override bool IsUserGrain => false;

    public ValueTask<DashboardResult> GetAsync(DashboardRequest request, bool mayAddEntry, CancellationToken cancellationToken = default)
    {
        var view = Catalog.Find(request.View) ?? throw new ArgumentException($"Unknown view '{request.View}'.", nameof(request));
        if (view.Scope != ViewScope.Site || !view.AllowsRole(Scope.Role))
        {
            throw new UnauthorizedAccessException($"View '{view.Name}' is not a site view for role '{Scope.Role}'.");
        }

        return Entries.GetAsync(view, request, mayAddEntry, cancellationToken);
    }
}
