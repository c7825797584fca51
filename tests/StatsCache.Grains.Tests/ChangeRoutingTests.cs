using System.Text;
using StatsCache.Cache;
using StatsCache.Catalog;
using StatsCache.Changes;

namespace StatsCache.Grains.Tests;

/// <summary>
/// How changes are coalesced (<see cref="ChangeSet"/>, bounded) and routed to active grains (<see cref="ChangeRouting"/>),
/// and how the catalog declares the tables they come from. No silo needed.
/// </summary>
public sealed class ChangeRoutingTests
{
    private static readonly DashboardCatalog Catalog = Parse("""
        {
          "tables": {
            "orders": { "site": "website_id", "users": ["client_id", "writer_id"] },
            "tiers": { "site": "website_id" }
          },
          "views": [
            { "name": "mine", "roles": ["client"], "scope": "user", "ttl": "00:05:00", "reads": { "orders": "user", "tiers": "site" },
              "queries": [ { "name": "q", "shape": "row", "sql": "select @user_id" } ] },
            { "name": "site-orders", "roles": ["admin"], "scope": "site", "ttl": "00:05:00", "reads": { "orders": "site" },
              "queries": [ { "name": "q", "shape": "row", "sql": "select @site_id" } ] },
            { "name": "unrelated", "roles": ["client"], "scope": "user", "ttl": "00:05:00",
              "queries": [ { "name": "q", "shape": "row", "sql": "select 1" } ] }
          ]
        }
        """);

    [Fact]
    public void ATransactionOfManyRowsBecomesOneNoticePerTableAndSiteNamingEachUserOnce()
    {
        var changes = new ChangeSet();
        for (var i = 0; i < 100_000; i++)
        {
            changes.AddRow("orders", 1 + (i % 2), [i % 50, 1000]);
        }

        changes.Advance(42);
        var batch = changes.TakeBatch();

        Assert.True(changes.IsEmpty);
        Assert.Equal(42UL, batch.Lsn);
        Assert.Equal(2, batch.Notices.Length);
        Assert.All(batch.Notices, n => Assert.Equal(26, n.Users!.Value.Length)); // 25 clients of each site's rows, and writer 1000
    }

    [Fact]
    public void PastTheBoundAChangeCoversEveryUserOfTheSiteAndPastThatEverySite()
    {
        var changes = new ChangeSet();
        for (var user = 0; user <= ChangeSet.MaxUsersPerSite; user++)
        {
            changes.AddRow("orders", 1, [user]);
        }

        Assert.Null(Assert.Single(changes.TakeBatch().Notices).Users); // every user of site 1

        for (var site = 0; site <= ChangeSet.MaxSitesPerTable; site++)
        {
            changes.AddRow("orders", site, [1]);
        }

        var everySite = changes.TakeBatch();
        Assert.Empty(everySite.Notices);
        Assert.Equal(["orders"], everySite.TablesOfEverySite.ToArray());
    }

    [Fact]
    public void BatchesMergedForASiloThatWasBusyLoseNothing()
    {
        var first = new ChangeSet();
        first.AddRow("orders", 1, [10]);
        first.Advance(100);
        var second = new ChangeSet();
        second.AddRow("orders", 1, [11]);
        second.AddNotice(new ChangeNotice(null, 2, [5], ["mine"]));
        second.AddTableOfEverySite("tiers");
        second.Advance(200);

        var merged = new ChangeSet();
        merged.Add(first.TakeBatch());
        merged.Add(second.TakeBatch());
        var batch = merged.TakeBatch();

        Assert.Equal(200UL, batch.Lsn);
        Assert.Equal([10L, 11L], batch.Notices.Single(n => n.Table == "orders").Users!.Value.Order());
        Assert.Contains(batch.Notices, n => n.Table is null && n.Site == 2);
        Assert.Equal(["tiers"], batch.TablesOfEverySite.ToArray());
    }

    [Fact]
    public void ARowChangeReachesItsUsersGrainsAndTheSitesGrainOnly()
    {
        var active = Active(new(1, "client", 10), new(1, "client", 11), new(1, "admin", null), new(2, "client", 10), new(1, "client", 12));
        var changes = new ChangeSet();
        changes.AddRow("orders", 1, [10, 12]); // a client and a writer named by one order
        changes.Advance(7);

        var routes = ChangeRouting.Route(changes.TakeBatch(), Catalog, active);

        Assert.Equal(["mine"], routes[new(1, "client", 10)].ToArray());
        Assert.Equal(["mine"], routes[new(1, "client", 12)].ToArray());
        Assert.Equal(["site-orders"], routes[new(1, "admin", null)].ToArray());
        Assert.False(routes.ContainsKey(new(1, "client", 11)));
        Assert.False(routes.ContainsKey(new(2, "client", 10)));
    }

    [Fact]
    public void ASiteWideReadOrATruncateReachesEveryActiveGrainThatReadsTheTable()
    {
        var active = Active(new(1, "client", 10), new(1, "client", 11), new(2, "client", 10));
        var site = new ChangeSet();
        site.AddRow("tiers", 1, []);
        var routes = ChangeRouting.Route(site.TakeBatch(), Catalog, active);
        Assert.Equal([new DashboardScope(1, "client", 10), new(1, "client", 11)], routes.Keys.OrderBy(k => k.UserId));

        var truncate = new ChangeSet();
        truncate.AddTableOfEverySite("orders");
        Assert.Equal(3, ChangeRouting.Route(truncate.TakeBatch(), Catalog, active).Count);

        var all = ChangeRouting.Route(ChangeBatch.Everything(0), Catalog, active);
        Assert.All(all.Values, views => Assert.Empty(views)); // empty: every view
        Assert.Equal(3, all.Count);
    }

    [Theory]
    [InlineData("""{ "views": [ VIEW ] }""", "names a table that 'tables' does not declare")]
    [InlineData("""{ "tables": { "orders": { "site": "website_id" } }, "views": [ VIEW ] }""", "declares no 'users' columns")]
    [InlineData("""{ "tables": { "orders": { "site": "website_id", "users": ["client_id"] }, "extra": { "site": "s" } }, "views": [ VIEW ] }""", "table 'extra': no view reads it")]
    [InlineData("""{ "tables": { "orders": { "users": ["client_id"] } }, "views": [ VIEW ] }""", "field 'site' must name the column")]
    [InlineData("""{ "tables": { "orders": { "site": "website_id", "users": ["Client-Id"] } }, "views": [ VIEW ] }""", "invalid column 'Client-Id'")]
    [InlineData("""{ "tables": { "orders": { "site": "website_id", "users": ["website_id"] } }, "views": [ VIEW ] }""", "names a column twice, or the site column")]
    public void TheCatalogDeclaresEachTableTheViewsReadWithTheColumnsChangesAreRoutedBy(string json, string error)
    {
        var view = """{ "name": "v", "roles": ["client"], "scope": "user", "ttl": "00:05:00", "reads": { "orders": "user" }, "queries": [ { "name": "q", "shape": "row", "sql": "select 1" } ] }""";
        var thrown = Assert.Throws<CatalogException>(() => Parse(json.Replace("VIEW", view, StringComparison.Ordinal)));
        Assert.Contains(error, thrown.Message);
    }

    private static ActiveDashboards Active(params DashboardScope[] grains)
    {
        var active = new ActiveDashboards();
        foreach (var grain in grains)
        {
            active.Add(grain);
        }

        return active;
    }

    private static DashboardCatalog Parse(string json) => DashboardCatalog.Parse(new MemoryStream(Encoding.UTF8.GetBytes(json)), "test catalog");
}
