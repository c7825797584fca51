using System.Collections.Immutable;
using StatsCache.Cache;
using StatsCache.Catalog;

namespace StatsCache.Changes;

/// <summary>Which of this silo's active grains a change affects, and which of their views, per the catalog's <c>reads</c>.</summary>
public static class ChangeRouting
{
    public static Dictionary<DashboardScope, ImmutableArray<string>> Route(ChangeNotice notice, DashboardCatalog catalog, ActiveDashboards active)
    {
        // The affected views, each with whether every user of the site is affected or only the named ones.
        var views = notice.Table is { } table
            ? catalog.Views.Where(v => v.Reads.ContainsKey(table)).Select(v => (View: v, Scope: v.Reads[table])).ToList()
            : catalog.Views.Where(v => notice.Views is not { } names || names.Contains(v.Name))
                .Select(v => (View: v, Scope: notice.Users is null ? ChangeScope.Site : ChangeScope.User)).ToList();
        var routes = new Dictionary<DashboardScope, ImmutableArray<string>>();
        if (views.Count == 0)
        {
            return routes;
        }

        var users = notice.Users ?? [];
        foreach (var grain in Candidates(notice.Site, users, views, catalog, active))
        {
            var affected = views
                .Where(x => x.View.AllowsRole(grain.Role))
                .Where(x => grain.UserId is { } user
                    ? x.View.Scope == ViewScope.User && (x.Scope == ChangeScope.Site || users.Contains(user))
                    : x.View.Scope == ViewScope.Site)
                .Select(x => x.View.Name)
                .ToImmutableArray();
            if (!affected.IsEmpty)
            {
                routes[grain] = affected;
            }
        }

        return routes;
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
