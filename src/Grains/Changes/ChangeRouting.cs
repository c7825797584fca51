using System.Collections.Immutable;
using StatsCache.Cache;
using StatsCache.Catalog;

namespace StatsCache.Changes;

/// <summary>Which of this silo's active grains a batch of changes affects, and which of their views, per the catalog's <c>reads</c>.</summary>
public static class ChangeRouting
{
    private static readonly HashSet<long> NoUsers = [];

    /// <summary>Each affected grain with the views to refresh (empty: all of them).</summary>
    public static Dictionary<DashboardScope, ImmutableArray<string>> Route(ChangeBatch batch, DashboardCatalog catalog, ActiveDashboards active)
    {
        // Per grain, the views affected; null: all of them.
        var routes = new Dictionary<DashboardScope, HashSet<string>?>();
        if (batch.RefreshAll)
        {
            foreach (var grain in active.All)
            {
                routes[grain] = null;
            }
        }
        else
        {
            foreach (var table in batch.TablesOfEverySite)
            {
                var readers = catalog.ReadersOf(table).Select(r => (r.View, ChangeScope.Site)).ToList();
                foreach (var grain in active.All)
                {
                    AddAffected(routes, grain, readers, NoUsers);
                }
            }

            foreach (var notice in batch.Notices)
            {
                Route(notice, catalog, active, routes);
            }
        }

        return routes.ToDictionary(r => r.Key, r => r.Value is null ? [] : r.Value.ToImmutableArray());
    }

    private static void Route(ChangeNotice notice, DashboardCatalog catalog, ActiveDashboards active, Dictionary<DashboardScope, HashSet<string>?> routes)
    {
        // The affected views, each with whether every user of the site is affected or only the named ones.
        var everyUser = notice.Users is null;
        var views = notice.Table is { } table
            ? catalog.ReadersOf(table).Select(r => (r.View, Scope: everyUser ? ChangeScope.Site : r.Scope)).ToList()
            : catalog.Views.Where(v => notice.Views is not { } names || names.Contains(v.Name))
                .Select(v => (View: v, Scope: everyUser ? ChangeScope.Site : ChangeScope.User)).ToList();
        if (views.Count == 0)
        {
            return;
        }

        var users = notice.Users ?? [];
        var named = users.IsEmpty ? NoUsers : users.ToHashSet();
        foreach (var grain in Candidates(notice.Site, users, views, catalog, active))
        {
            AddAffected(routes, grain, views, named);
        }
    }

    private static void AddAffected(
        Dictionary<DashboardScope, HashSet<string>?> routes, DashboardScope grain, List<(ViewDefinition View, ChangeScope Scope)> views, HashSet<long> users)
    {
        if (routes.TryGetValue(grain, out var held) && held is null)
        {
            return; // already every view
        }

        foreach (var (view, scope) in views)
        {
            var affected = view.AllowsRole(grain.Role) && (grain.UserId is { } user
                ? view.Scope == ViewScope.User && (scope == ChangeScope.Site || users.Contains(user))
                : view.Scope == ViewScope.Site);
            if (affected)
            {
                (held ??= routes[grain] = new HashSet<string>(StringComparer.Ordinal)).Add(view.Name);
            }
        }
    }

    // Every active grain of the site when some user view is affected site-wide; otherwise only the
    // named users' grains and the site grains, looked up directly (a busy site has many active users).
    private static IEnumerable<DashboardScope> Candidates(
        long site, ImmutableArray<long> users, List<(ViewDefinition View, ChangeScope Scope)> views, DashboardCatalog catalog, ActiveDashboards active)
    {
        if (views.Any(x => x.View.Scope == ViewScope.User && x.Scope == ChangeScope.Site))
        {
            return active.OfSite(site);
        }

        return catalog.Roles
            .SelectMany(role => users.Select(user => new DashboardScope(site, role, user)).Append(new DashboardScope(site, role, null)))
            .Where(active.Contains);
    }
}
