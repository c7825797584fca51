using System.Collections.Immutable;
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
    DashboardCache cache) : Grain, ISiteDashboardGrain
{
    // Orleans' default name for this class, declared so references can be made without resolving it (DashboardGrains).
    private const string TypeName = "sitedashboard";

    public static readonly GrainType GrainType = GrainType.Create(TypeName);

    private DashboardScope _scope;
    private DashboardEntries _entries = null!;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _scope = DashboardScope.Parse(this.GetPrimaryKeyString());
        if (_scope.UserId is not null)
        {
            throw new ArgumentException($"'{this.GetPrimaryKeyString()}' is not a site grain key \"{{site}}/{{role}}\".");
        }

        _entries = cache.CreateEntries(this, store, _scope);
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

    public ValueTask<DashboardResult> GetAsync(DashboardRequest request, bool mayAddEntry, CancellationToken cancellationToken = default)
    {
        var view = cache.Catalog.Find(request.View) ?? throw new ArgumentException($"Unknown view '{request.View}'.", nameof(request));
        if (view.Scope != ViewScope.Site || !view.AllowsRole(_scope.Role))
        {
            throw new UnauthorizedAccessException($"View '{view.Name}' is not a site view for role '{_scope.Role}'.");
        }

        return _entries.GetAsync(view, request, mayAddEntry, cancellationToken);
    }
}
