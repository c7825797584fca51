using System.Collections.Immutable;
using StatsCache.Cache;
using StatsCache.Catalog;

namespace StatsCache;

/// <summary>
/// What both dashboard grains do alike: read and check their key, keep their entries (restored from storage on
/// activation, released on deactivation), tell the silo's change-feed routing they are active, and take
/// invalidations. The subclasses add their reads.
/// </summary>
public abstract class DashboardGrain(IPersistentState<DashboardSnapshots> store, DashboardCache cache) : Grain
{
    /// <summary>Whose dashboards these are: a user's (<see cref="DashboardScope.UserId"/> set) or a site's and role's.</summary>
    protected DashboardScope Scope { get; private set; }

    private protected DashboardEntries Entries { get; private set; } = null!;

    protected DashboardCatalog Catalog => cache.Catalog;

    /// <summary>True for a user's grain (key <c>"{site}/{role}/{user}"</c>), false for a site's (<c>"{site}/{role}"</c>).</summary>
    protected abstract bool IsUserGrain { get; }

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var key = this.GetPrimaryKeyString();
        Scope = DashboardScope.Parse(key);
        if (Scope.UserId is not null != IsUserGrain)
        {
            throw new ArgumentException(IsUserGrain
                ? $"'{key}' is not a user grain key \"{{site}}/{{role}}/{{user}}\"."
                : $"'{key}' is not a site grain key \"{{site}}/{{role}}\".");
        }

        Entries = cache.CreateEntries(this, store, Scope);
        Entries.Restore();
        cache.Active.Add(Scope);
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        cache.Active.Remove(Scope);
        return Entries.DeactivateAsync();
    }

    public Task InvalidateAsync(ImmutableArray<string> views, ulong lsn)
    {
        Entries.Invalidate(views, lsn);
        return Task.CompletedTask;
    }
}
