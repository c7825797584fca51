using Orleans.Concurrency;
using StatsCache.Cache;
using StatsCache.Catalog;

namespace StatsCache;

/// <summary>
/// One caller's dashboards. User-scoped views are cached here; site-scoped views are forwarded to
/// the site's shared grain after the role check, so a user never reaches a view of another role.
/// </summary>
[Reentrant] // Reads interleave with loads: concurrent readers of a cold entry join one load.
[GrainType(TypeName)]
public sealed class UserDashboardGrain(
    [PersistentState(DashboardSnapshots.StateName, DashboardSnapshots.StorageName)] IPersistentState<DashboardSnapshots> store,
    DashboardCache cache,
    DashboardGrains grains) : DashboardGrain(store, cache), IUserDashboardGrain
{
    // Orleans' default name for this class, declared so references can be made without resolving it (DashboardGrains).
    private const string TypeName = "userdashboard";

    public static readonly GrainType GrainType = GrainType.Create(TypeName);

    private readonly NewEntryBudget _budget = cache.CreateBudget();

    protected override bool IsUserGrain => true;

    public async ValueTask<DashboardResult> GetAsync(DashboardRequest request, CancellationToken cancellationToken = default)
    {
        var view = Catalog.Find(request.View) ?? throw new ArgumentException($"Unknown view '{request.View}'.", nameof(request));
        if (!view.AllowsRole(Scope.Role))
        {
            throw new UnauthorizedAccessException($"View '{view.Name}' is not available to role '{Scope.Role}'.");
        }

        // Only where the entry would be (here, or the site's grain) is it known whether this read adds one, and
        // so a load: take a token of the caller's budget for it first, and give it back when no entry was added.
        var mayAddEntry = _budget.TryTake();
        var result = view.Scope == ViewScope.Site
            ? await grains.Site(Scope.SiteId, Scope.Role).GetAsync(request, mayAddEntry, cancellationToken)
            : await Entries.GetAsync(view, request, mayAddEntry, cancellationToken);
        if (mayAddEntry && !result.AddedEntry)
        {
            _budget.Return();
        }

        return result.Refused ? result with { NextRefreshIn = _budget.TimeToNextToken() } : result;
    }
}
