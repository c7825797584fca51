using System.Collections.Immutable;
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
    DashboardGrains grains) : Grain, IUserDashboardGrain
{
    // Orleans' default name for this class, declared so references can be made without resolving it (DashboardGrains).
    private const string TypeName = "userdashboard";

    public static readonly GrainType GrainType = GrainType.Create(TypeName);

    private DashboardScope _scope;
    private DashboardEntries _entries = null!;
    private NewEntryBudget _budget = null!;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _scope = DashboardScope.Parse(this.GetPrimaryKeyString());
        if (_scope.UserId is null)
        {
            throw new ArgumentException($"'{this.GetPrimaryKeyString()}' is not a user grain key \"{{site}}/{{role}}/{{user}}\".");
        }

        _entries = cache.CreateEntries(this, store, _scope);
        _budget = cache.CreateBudget();
        _entries.Restore();
        cache.Active.Add(_scope);
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        cache.Active.Remove(_scope);
        return _entries.DeactivateAsync();
    }

    public Task InvalidateAsync(ImmutableArray<string> views)
    {
        _entries.Invalidate(views);
        return Task.CompletedTask;
    }

    public async ValueTask<DashboardResult> GetAsync(DashboardRequest request, CancellationToken cancellationToken = default)
    {
        var view = cache.Catalog.Find(request.View) ?? throw new ArgumentException($"Unknown view '{request.View}'.", nameof(request));
        if (!view.AllowsRole(_scope.Role))
        {
            throw new UnauthorizedAccessException($"View '{view.Name}' is not available to role '{_scope.Role}'.");
        }

        // Only where the entry would be (here, or the site's grain) is it known whether this read adds one, and
        // so a load: take a token of the caller's budget for it first, and give it back when no entry was added.
        var mayAddEntry = _budget.TryTake();
        var result = view.Scope == ViewScope.Site
            ? await grains.Site(_scope.SiteId, _scope.Role).GetAsync(request, mayAddEntry, cancellationToken)
            : await _entries.GetAsync(view, request, mayAddEntry, cancellationToken);
        if (mayAddEntry && !result.AddedEntry)
        {
            _budget.Return();
        }

        return result.Refused ? result with { NextRefreshIn = _budget.TimeToNextToken() } : result;
    }
}
