using System.Diagnostics;
using System.Text;
using System.Text.Json;
using StatsCache.Catalog;
using StatsCache.Source;

namespace StatsCache.Integration.Tests;

/// <summary>The PostgreSQL source on its own: one round trip per view, and JSON written straight from the reader.</summary>
[Collection(DatabaseCollection.Name)]
public sealed class PostgresSourceTests(TestDatabase db)
{
    private static readonly ActivitySource Test = new("StatsCache.Integration.Tests");

    [Fact]
    public async Task EveryShippedViewLoadsInOneRoundTrip()
    {
        var catalog = DashboardCatalog.Load(null);
        var site = await db.NewWebsiteAsync();
        var users = new Dictionary<string, long>();
        foreach (var role in catalog.Roles)
        {
            users[role] = await db.NewUserAsync(site, role);
        }

        foreach (var view in catalog.Views)
        {
            var role = view.Roles[0];
            var scope = new DashboardScope(site, role, view.Scope == ViewScope.User ? users[role] : null);
            var commands = await CountDatabaseCommandsAsync(() => PostgresDashboardSource.RunAsync(db.DataSource, view, scope, view.DefaultParameters, CancellationToken.None));
            Assert.True(commands == 1, $"View '{view.Name}' took {commands} round trips; expected one batch.");
        }
    }

    [Fact]
    public async Task ColumnsKeepTheirJsonTypes()
    {
        var view = SingleQueryView("""
            select 7::int as i, 9007199254740993::bigint as b, 12.50::numeric(10,2) as n, 1.5::float8 as f,
                   null::int as z, true as t, 'a "quoted" text' as s, date '2024-02-29' as d,
                   timestamptz '2024-02-29 13:04:05.25+00' as ts, interval '90 seconds' as iv,
                   '{"a": [1, 2]}'::jsonb as j, array[1, 2, 3] as arr, @site_id as site, @user_id as user_id, @role as role
            """);

        var json = await PostgresDashboardSource
            .RunAsync(db.DataSource, view, new DashboardScope(42, "client", 7), view.DefaultParameters, CancellationToken.None);

        var expected = """
            {"q":{"i":7,"b":9007199254740993,"n":12.50,"f":1.5,"z":null,"t":true,"s":"a \u0022quoted\u0022 text","d":"2024-02-29","ts":"2024-02-29T13:04:05.25Z","iv":90,"j":{"a": [1, 2]},"arr":[1,2,3],"site":42,"user_id":7,"role":"client"}}
            """;
        Assert.Equal(expected, Encoding.UTF8.GetString(json));
        using var _ = JsonDocument.Parse(json); // and it is valid JSON
    }

    [Fact]
    public async Task RowQueryWithoutRowsIsNullAndRowsQueryIsAnEmptyArray()
    {
        var view = DashboardCatalog.Parse(Json("""
            { "views": [ { "name": "empty", "roles": ["client"], "scope": "user", "ttl": "00:01:00", "queries": [
                { "name": "one", "shape": "row", "sql": "select 1 as x where false" },
                { "name": "many", "shape": "rows", "sql": "select 1 as x where false" } ] } ] }
            """), "test").Views[0];

        var json = await PostgresDashboardSource
            .RunAsync(db.DataSource, view, new DashboardScope(1, "client", 1), view.DefaultParameters, CancellationToken.None);
        Assert.Equal("""{"one":null,"many":[]}""", Encoding.UTF8.GetString(json));
    }

    [Fact]
    public async Task RowQueryReturningSeveralRowsFailsTheLoad()
    {
        var view = SingleQueryView("select generate_series(1, 2) as x");
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => PostgresDashboardSource
            .RunAsync(db.DataSource, view, new DashboardScope(1, "client", 1), view.DefaultParameters, CancellationToken.None));
        Assert.Contains("'row'", error.Message);
    }

    private static async Task<int> CountDatabaseCommandsAsync(Func<Task> load)
    {
        var count = 0;
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is "Npgsql" or "StatsCache.Integration.Tests",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
        };
        ActivitySource.AddActivityListener(listener);
        using (var scope = Test.StartActivity("load"))
        {
            listener.ActivityStopped = activity =>
            {
                // Only commands issued under this test's own activity: other tests' queries do not count.
                if (activity.Source.Name == "Npgsql" && activity.Parent?.SpanId == scope!.SpanId)
                {
                    Interlocked.Increment(ref count);
                }
            };
            await load();
        }

        return count;
    }

    private static ViewDefinition SingleQueryView(string sql) =>
        DashboardCatalog.Parse(Json(JsonSerializer.Serialize(new
        {
            views = new[]
            {
                new { name = "probe", roles = new[] { "client" }, scope = "user", ttl = "00:01:00", queries = new[] { new { name = "q", shape = "row", sql } } },
            },
        })), "test").Views[0];

    private static MemoryStream Json(string text) => new(Encoding.UTF8.GetBytes(text));
}
