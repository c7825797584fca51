using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using static StatsCache.Integration.Tests.ViewAssert;

namespace StatsCache.Integration.Tests;

/// <summary>
/// Every number of every admin view, through HTTP on real PostgreSQL. Each test makes its own
/// websites and rows; expected values come from those rows, never from the views' SQL.
/// Times are placed well inside their windows (noon of a UTC day, or now), so the tests hold at
/// any time of day; a test that runs across midnight UTC may see its window move.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class AdminViewTests(TestDatabase db, StatsCacheFactory factory)
{
    private static readonly string[] AdminViews =
        ["admin-overview", "admin-analytics", "admin-reviews", "admin-disputes", "admin-refunds", "admin-reminders"];

    [Fact]
    public async Task AdminOverviewCountsStatusesRevenueWindowsPeopleAndIssues()
    {
        var site = await db.NewWebsiteAsync();
        var now = DateTime.UtcNow;
        var c1 = await db.NewUserAsync(site, "client");
        var c2 = await db.NewUserAsync(site, "client");
        var c3 = await db.NewUserAsync(site, "client", active: false);
        var w1 = await db.NewUserAsync(site, "writer");
        var w2 = await db.NewUserAsync(site, "writer", active: false);
        var admin = await db.NewUserAsync(site, "admin");

        // Completed: today (100), 3 days ago (40), 20 days ago (25.50), 40 days ago (7, outside), unpaid today (1000).
        var o1 = await OrderAsync(site, c1, "completed", 100m, w1, created: now.AddDays(-2), completed: now);
        await OrderAsync(site, c1, "completed", 40m, w1, created: now.AddDays(-5), completed: now.AddDays(-3));
        await OrderAsync(site, c2, "completed", 25.50m, w2, created: now.AddDays(-25), completed: now.AddDays(-20));
        await OrderAsync(site, c2, "completed", 7m, w1, created: now.AddDays(-50), completed: now.AddDays(-40));
        await OrderAsync(site, c1, "completed", 1000m, w1, paid: false, created: now.AddDays(-1), completed: now);
        // Recent orders without a writer, and a refunded one with a completion time: none is revenue.
        await OrderAsync(site, c3, "pending", 10m, null, paid: false, created: now.AddDays(-1));
        await OrderAsync(site, c2, "cancelled", 20m, null, paid: false, created: now.AddDays(-10));
        await OrderAsync(site, c1, "refunded", 30m, w2, created: now.AddDays(-3), completed: now.AddDays(-2));
        // One order of each other status, placed long ago.
        await OrderAsync(site, c2, "available", 1m, null, paid: false, created: now.AddDays(-100));
        foreach (var status in new[] { "in_progress", "submitted", "revision", "disputed" })
        {
            await OrderAsync(site, c2, status, 1m, w1, created: now.AddDays(-100));
        }

        foreach (var status in new[] { "open", "open", "in_review", "resolved", "closed" })
        {
            await DisputeAsync(site, o1, c1, status, now.AddDays(-1), status is "resolved" or "closed" ? now : null);
        }

        foreach (var (status, amount) in new[] { ("pending", 10m), ("pending", 5.25m), ("approved", 30m), ("processed", 99m), ("rejected", 3m) })
        {
            await RefundAsync(site, o1, c1, amount, status);
        }

        await SeedOtherWebsiteAsync();

        var data = await GetDataAsync(site, admin, "admin-overview");

        Row(data.GetProperty("orders_by_status"), ("total", 13m), ("pending", 1m), ("available", 1m), ("in_progress", 1m),
            ("submitted", 1m), ("revision", 1m), ("completed", 5m), ("disputed", 1m), ("cancelled", 1m), ("refunded", 1m));
        Row(data.GetProperty("revenue"), ("today", 100m), ("last_7_days", 140m), ("last_30_days", 165.50m),
            ("today_orders", 1m), ("last_7_days_orders", 2m), ("last_30_days_orders", 3m));
        Row(data.GetProperty("people"), ("active_clients", 2m), ("active_writers", 1m),
            ("ordering_clients_30d", 3m), ("working_writers_30d", 2m));
        Row(data.GetProperty("issues"), ("open_disputes", 3m), ("disputes_open", 2m), ("disputes_in_review", 1m),
            ("pending_refunds", 2m), ("pending_refunds_amount", 15.25m), ("approved_refunds", 1m), ("approved_refunds_amount", 30m));
    }

    [Fact]
    public async Task AdminAnalyticsListsEveryDayOfTheWindowWithOrdersCompletionsRevenueRatesAndTopWriters()
    {
        var site = await db.NewWebsiteAsync();
        var now = DateTime.UtcNow;
        var today = now.Date;
        var client = await db.NewUserAsync(site, "client");
        var w1 = await db.NewUserAsync(site, "writer");
        var w2 = await db.NewUserAsync(site, "writer");
        var admin = await db.NewUserAsync(site, "admin");

        await OrderAsync(site, client, "completed", 100m, w1, created: Noon(today, -6), completed: Noon(today, -5));
        await OrderAsync(site, client, "completed", 50m, w1, created: Noon(today, -3), completed: Noon(today, -2));
        await OrderAsync(site, client, "completed", 70m, w2, paid: false, created: Noon(today, -3), completed: now);
        await OrderAsync(site, client, "cancelled", 20m, null, paid: false, created: Noon(today, -2));
        await OrderAsync(site, client, "refunded", 30m, w2, created: Noon(today, -2));
        await OrderAsync(site, client, "pending", 5m, null, paid: false, created: now);
        // Created before the window, completed inside it: a completion, not an order of the window.
        await OrderAsync(site, client, "completed", 40m, w2, created: Noon(today, -10), completed: Noon(today, -1));
        // Completed before the window: nowhere.
        await OrderAsync(site, client, "completed", 1000m, w1, created: Noon(today, -20), completed: Noon(today, -8));
        // Completed without a writer: a completion and revenue, but no writer to rank.
        await OrderAsync(site, client, "completed", 60m, null, created: Noon(today, -1), completed: Noon(today, -1).AddHours(1));
        // Dated tomorrow (UTC): after the window, so nowhere.
        await OrderAsync(site, client, "pending", 8m, null, paid: false, created: Noon(today, 1));
        await OrderAsync(site, client, "completed", 9m, w1, created: now, completed: Noon(today, 1));
        await SeedOtherWebsiteAsync();

        var data = await GetDataAsync(site, admin, "admin-analytics", "days=7");

        AssertDaily(data.GetProperty("daily"), today, 7, new()
        {
            [-6] = (1, 0, 0m),
            [-5] = (0, 1, 100m),
            [-3] = (2, 0, 0m),
            [-2] = (2, 1, 50m),
            [-1] = (1, 2, 100m),
            [0] = (2, 1, 0m),
        });
        // 8 orders created in the window: 5 completed (62.5 %), 1 cancelled (12.5 %), 1 refunded.
        Row(data.GetProperty("summary"), ("orders", 8m), ("completed", 5m), ("cancelled", 1m), ("refunded", 1m),
            ("completion_rate_pct", 62.5m), ("cancellation_rate_pct", 12.5m), ("completions", 5m), ("revenue", 250m));
        // Both writers completed 2; the higher value (150 against 110) ranks first.
        AssertTopWriters(data.GetProperty("top_writers"), (w1, 2, 150m), (w2, 2, 110m));
    }

    [Fact]
    public async Task AdminAnalyticsTopWritersAreTheFirstTenByCompletionsThenValueThenId()
    {
        var site = await db.NewWebsiteAsync();
        var now = DateTime.UtcNow;
        var client = await db.NewUserAsync(site, "client");
        var admin = await db.NewUserAsync(site, "admin");
        var writers = new List<long>();
        for (var i = 0; i < 12; i++)
        {
            var writer = await db.NewUserAsync(site, "writer");
            writers.Add(writer);
            await OrderAsync(site, client, "completed", 10m, writer, created: now.AddDays(-3), completed: now.AddDays(-2));
        }

        var busiest = await db.NewUserAsync(site, "writer");
        await OrderAsync(site, client, "completed", 1m, busiest, created: now.AddDays(-3), completed: now.AddDays(-2));
        await OrderAsync(site, client, "completed", 1m, busiest, created: now.AddDays(-3), completed: now.AddDays(-2));
        // Same count and value as the twelve, but the pricier completion ranks it first among them.
        var pricier = await db.NewUserAsync(site, "writer");
        await OrderAsync(site, client, "completed", 10.01m, pricier, created: now.AddDays(-3), completed: now.AddDays(-2));

        var top = (await GetDataAsync(site, admin, "admin-analytics")).GetProperty("top_writers");

        var expected = new[] { (busiest, 2L, 2m), (pricier, 1L, 10.01m) }
            .Concat(writers.Take(8).Select(w => (w, 1L, 10m))).ToArray();
        AssertTopWriters(top, expected);
        var names = await UsernamesAsync(site);
        Assert.All(top.EnumerateArray(), w => Assert.Equal(names[w.GetProperty("writer_id").GetInt64()], w.GetProperty("username").GetString()));
    }

    [Fact]
    public async Task AdminAnalyticsWithOneDayCoversTodayOnly()
    {
        var site = await db.NewWebsiteAsync();
        var now = DateTime.UtcNow;
        var client = await db.NewUserAsync(site, "client");
        var writer = await db.NewUserAsync(site, "writer");
        var admin = await db.NewUserAsync(site, "admin");
        await OrderAsync(site, client, "completed", 10m, writer, created: now, completed: now);
        await OrderAsync(site, client, "completed", 20m, writer, created: Noon(now.Date, -1), completed: Noon(now.Date, -1));

        var data = await GetDataAsync(site, admin, "admin-analytics", "days=1");

        AssertDaily(data.GetProperty("daily"), now.Date, 1, new() { [0] = (1, 1, 10m) });
        Row(data.GetProperty("summary"), ("orders", 1m), ("completed", 1m), ("cancelled", 0m), ("refunded", 0m),
            ("completion_rate_pct", 100m), ("cancellation_rate_pct", 0m), ("completions", 1m), ("revenue", 10m));
        AssertTopWriters(data.GetProperty("top_writers"), (writer, 1, 10m));
    }

    [Fact]
    public async Task AdminAnalyticsWith365DaysStartsAt364DaysAgo()
    {
        var site = await db.NewWebsiteAsync();
        var today = DateTime.UtcNow.Date;
        var client = await db.NewUserAsync(site, "client");
        var writer = await db.NewUserAsync(site, "writer");
        var admin = await db.NewUserAsync(site, "admin");
        await OrderAsync(site, client, "cancelled", 5m, null, paid: false, created: Noon(today, -364));
        await OrderAsync(site, client, "completed", 11m, writer, created: Noon(today, -365), completed: Noon(today, -364).AddHours(1));
        await OrderAsync(site, client, "completed", 13m, writer, created: Noon(today, -366), completed: Noon(today, -365).AddHours(1));

        var data = await GetDataAsync(site, admin, "admin-analytics", "days=365");

        AssertDaily(data.GetProperty("daily"), today, 365, new() { [-364] = (1, 1, 11m) });
        Row(data.GetProperty("summary"), ("orders", 1m), ("completed", 0m), ("cancelled", 1m), ("refunded", 0m),
            ("completion_rate_pct", 0m), ("cancellation_rate_pct", 100m), ("completions", 1m), ("revenue", 11m));
        AssertTopWriters(data.GetProperty("top_writers"), (writer, 1, 11m));
    }

    [Theory]
    [InlineData("days=0")]
    [InlineData("days=366")]
    public async Task AdminAnalyticsRejectsDaysOutsideOneTo365(string query)
    {
        var site = await db.NewWebsiteAsync();
        var admin = await db.NewUserAsync(site, "admin");
        var response = await factory.ClientFor(site, "admin", admin).GetAsync($"/api/dashboards/admin-analytics?{query}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Fact]
    public async Task AdminReviewsCountsApprovedPendingFlaggedAndAverageOfEachKind()
    {
        var site = await db.NewWebsiteAsync();
        var now = DateTime.UtcNow;
        var client = await db.NewUserAsync(site, "client");
        var writer = await db.NewUserAsync(site, "writer");
        var admin = await db.NewUserAsync(site, "admin");
        var order = await OrderAsync(site, client, "completed", 10m, writer, created: now.AddDays(-2), completed: now.AddDays(-1));

        // Website reviews: approved 5 and 4, flagged 1, pending 3, approved and flagged 2.
        foreach (var (rating, approved, flagged) in new[] { (5, true, false), (4, true, false), (1, false, true), (3, false, false), (2, true, true) })
        {
            await ReviewAsync("website_reviews", site, client, rating, approved, flagged);
        }

        // Writer reviews, one without an order: approved 5, pending 4 and 4.
        await ReviewAsync("writer_reviews", site, client, 5, approved: true, flagged: false, writer: writer, order: order);
        await ReviewAsync("writer_reviews", site, client, 4, approved: false, flagged: false, writer: writer, order: order);
        await ReviewAsync("writer_reviews", site, client, 4, approved: false, flagged: false, writer: writer);
        // Order reviews: flagged 2, approved 5.
        await ReviewAsync("order_reviews", site, client, 2, approved: false, flagged: true, order: order);
        await ReviewAsync("order_reviews", site, client, 5, approved: true, flagged: false, order: order);
        await SeedOtherWebsiteAsync();

        var data = await GetDataAsync(site, admin, "admin-reviews");

        Row(data.GetProperty("website_reviews"), ("total", 5m), ("approved", 3m), ("pending", 1m), ("flagged", 2m), ("average_rating", 3.00m));
        Row(data.GetProperty("writer_reviews"), ("total", 3m), ("approved", 1m), ("pending", 2m), ("flagged", 0m), ("average_rating", 4.33m));
        Row(data.GetProperty("order_reviews"), ("total", 2m), ("approved", 1m), ("pending", 0m), ("flagged", 1m), ("average_rating", 3.50m));
    }

    [Fact]
    public async Task AdminDisputesCountsEachStatusAndAveragesResolutionOverResolvedAndClosed()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var admin = await db.NewUserAsync(site, "admin");
        var order = await OrderAsync(site, client, "disputed", 10m, null, created: DateTime.UtcNow.AddDays(-20));
        var opened = DateTime.UtcNow.AddDays(-10);

        await DisputeAsync(site, order, client, "open", opened, null);
        await DisputeAsync(site, order, client, "open", opened, opened.AddHours(100)); // not resolved: not averaged
        await DisputeAsync(site, order, client, "in_review", opened, null);
        await DisputeAsync(site, order, client, "resolved", opened, opened.AddHours(2));
        await DisputeAsync(site, order, client, "resolved", opened, opened.AddHours(5));
        await DisputeAsync(site, order, client, "closed", opened, opened.AddHours(8));
        await DisputeAsync(site, order, client, "closed", opened, null); // closed without a time: counted, not averaged
        await SeedOtherWebsiteAsync();

        var data = await GetDataAsync(site, admin, "admin-disputes");

        // (2 + 5 + 8) / 3 = 5 hours.
        Row(data.GetProperty("disputes"), ("total", 7m), ("open", 2m), ("in_review", 1m), ("resolved", 2m), ("closed", 2m),
            ("unresolved", 3m), ("resolved_with_time", 3m), ("average_resolution_seconds", 5m * 3600));
    }

    [Fact]
    public async Task AdminRefundsCountsAndSumsEachStatus()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var admin = await db.NewUserAsync(site, "admin");
        var order = await OrderAsync(site, client, "refunded", 200m, null, created: DateTime.UtcNow.AddDays(-5));
        foreach (var (status, amount) in new[]
                 {
                     ("pending", 10m), ("pending", 5.25m), ("approved", 30m), ("processed", 99.99m), ("processed", 0.01m), ("rejected", 3m),
                 })
        {
            await RefundAsync(site, order, client, amount, status);
        }

        await SeedOtherWebsiteAsync();

        var data = await GetDataAsync(site, admin, "admin-refunds");

        Row(data.GetProperty("refunds"), ("total", 6m), ("total_amount", 148.25m), ("pending", 2m), ("pending_amount", 15.25m),
            ("approved", 1m), ("approved_amount", 30m), ("processed", 2m), ("processed_amount", 100m), ("rejected", 1m), ("rejected_amount", 3m));
    }

    [Fact]
    public async Task AdminRemindersCountsConfigsAndRemindersSentInTotalAndInTheLastSevenDays()
    {
        var site = await db.NewWebsiteAsync();
        var now = DateTime.UtcNow;
        var client = await db.NewUserAsync(site, "client");
        var admin = await db.NewUserAsync(site, "admin");
        var active = await ReminderConfigAsync(site, active: true);
        await ReminderConfigAsync(site, active: true);
        await ReminderConfigAsync(site, active: true);
        var inactive = await ReminderConfigAsync(site, active: false);

        await SentReminderAsync(site, active, client, now.AddDays(-1));
        await SentReminderAsync(site, active, client, now.AddDays(-1));
        await SentReminderAsync(site, inactive, client, now.AddDays(-3)); // a config's state does not matter
        await SentReminderAsync(site, active, client, now.AddDays(-10));
        await SentReminderAsync(site, active, client, now.AddDays(-10));
        await SentReminderAsync(site, active, client, now.AddDays(-100));
        await SeedOtherWebsiteAsync();

        var data = await GetDataAsync(site, admin, "admin-reminders");

        Row(data.GetProperty("reminders"), ("configs_total", 4m), ("configs_active", 3m), ("sent_total", 6m), ("sent_last_7_days", 3m));
    }

    [Fact]
    public async Task EveryAdminViewOfASiteWithoutRowsAnswersZerosAndNulls()
    {
        var site = await db.NewWebsiteAsync();
        var admin = await db.NewUserAsync(site, "admin");
        await SeedOtherWebsiteAsync();

        var overview = await GetDataAsync(site, admin, "admin-overview");
        Row(overview.GetProperty("orders_by_status"), ("total", 0m), ("pending", 0m), ("available", 0m), ("in_progress", 0m),
            ("submitted", 0m), ("revision", 0m), ("completed", 0m), ("disputed", 0m), ("cancelled", 0m), ("refunded", 0m));
        Row(overview.GetProperty("revenue"), ("today", 0m), ("last_7_days", 0m), ("last_30_days", 0m),
            ("today_orders", 0m), ("last_7_days_orders", 0m), ("last_30_days_orders", 0m));
        Row(overview.GetProperty("people"), ("active_clients", 0m), ("active_writers", 0m),
            ("ordering_clients_30d", 0m), ("working_writers_30d", 0m));
        Row(overview.GetProperty("issues"), ("open_disputes", 0m), ("disputes_open", 0m), ("disputes_in_review", 0m),
            ("pending_refunds", 0m), ("pending_refunds_amount", 0m), ("approved_refunds", 0m), ("approved_refunds_amount", 0m));

        var analytics = await GetDataAsync(site, admin, "admin-analytics");
        AssertDaily(analytics.GetProperty("daily"), DateTime.UtcNow.Date, 30, []);
        Row(analytics.GetProperty("summary"), ("orders", 0m), ("completed", 0m), ("cancelled", 0m), ("refunded", 0m),
            ("completion_rate_pct", null), ("cancellation_rate_pct", null), ("completions", 0m), ("revenue", 0m));
        AssertTopWriters(analytics.GetProperty("top_writers"));

        var reviews = await GetDataAsync(site, admin, "admin-reviews");
        foreach (var kind in new[] { "website_reviews", "writer_reviews", "order_reviews" })
        {
            Row(reviews.GetProperty(kind), ("total", 0m), ("approved", 0m), ("pending", 0m), ("flagged", 0m), ("average_rating", null));
        }

        Row((await GetDataAsync(site, admin, "admin-disputes")).GetProperty("disputes"), ("total", 0m), ("open", 0m),
            ("in_review", 0m), ("resolved", 0m), ("closed", 0m), ("unresolved", 0m), ("resolved_with_time", 0m), ("average_resolution_seconds", null));
        Row((await GetDataAsync(site, admin, "admin-refunds")).GetProperty("refunds"), ("total", 0m), ("total_amount", 0m),
            ("pending", 0m), ("pending_amount", 0m), ("approved", 0m), ("approved_amount", 0m), ("processed", 0m), ("processed_amount", 0m),
            ("rejected", 0m), ("rejected_amount", 0m));
        Row((await GetDataAsync(site, admin, "admin-reminders")).GetProperty("reminders"), ("configs_total", 0m),
            ("configs_active", 0m), ("sent_total", 0m), ("sent_last_7_days", 0m));
    }

    [Fact]
    public async Task TwoAdminsOfOneSiteGetTheSameNumbers()
    {
        var site = await db.NewWebsiteAsync();
        var first = await db.NewUserAsync(site, "admin");
        var second = await db.NewUserAsync(site, "admin");
        await SeedAsync(site, 2);

        foreach (var view in AdminViews)
        {
            var a = await GetDataAsync(site, first, view);
            var b = await GetDataAsync(site, second, view);
            Assert.Equal(a.GetRawText(), b.GetRawText());
            AssertSeeded(view, a, 2);
        }
    }

    [Fact]
    public async Task AdminOfOneSiteNeverSeesAnotherSitesNumbers()
    {
        var siteA = await db.NewWebsiteAsync();
        var siteB = await db.NewWebsiteAsync();
        var adminA = await db.NewUserAsync(siteA, "admin");
        var adminB = await db.NewUserAsync(siteB, "admin");
        await SeedAsync(siteA, 1);
        await SeedAsync(siteB, 3);

        foreach (var view in AdminViews)
        {
            // B asks first, so a cache keyed carelessly would hand B's entry to A.
            AssertSeeded(view, await GetDataAsync(siteB, adminB, view), 3);
            AssertSeeded(view, await GetDataAsync(siteA, adminA, view), 1);
        }
    }

    [Theory]
    [InlineData("client")]
    [InlineData("writer")]
    public async Task AdminViewsAreForbiddenToOtherRoles(string role)
    {
        var site = await db.NewWebsiteAsync();
        var user = await db.NewUserAsync(site, role);
        var http = factory.ClientFor(site, role, user);
        foreach (var view in AdminViews)
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await http.GetAsync($"/api/dashboards/{view}")).StatusCode);
        }
    }

    private Task<JsonElement> GetDataAsync(long site, long admin, string view, string query = "") =>
        factory.GetDataAsync(site, "admin", admin, view, query);

    /// <summary>daily has one row per UTC day, oldest first, ending today; days not listed expect zeros.</summary>
    private static void AssertDaily(JsonElement daily, DateTime today, int days, Dictionary<int, (long Orders, long Completions, decimal Revenue)> expected)
    {
        var rows = daily.EnumerateArray().ToList();
        Assert.Equal(days, rows.Count);
        for (var i = 0; i < days; i++)
        {
            var offset = i - (days - 1);
            var (orders, completions, revenue) = expected.GetValueOrDefault(offset);
            var day = today.AddDays(offset).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
            Assert.Equal(day, rows[i].GetProperty("day").GetString());
            Assert.True((orders, completions, revenue) == (rows[i].GetProperty("orders").GetInt64(),
                rows[i].GetProperty("completions").GetInt64(), rows[i].GetProperty("revenue").GetDecimal()),
                $"{day}: expected ({orders}, {completions}, {revenue}), got {rows[i]}");
        }
    }

    private static void AssertTopWriters(JsonElement top, params (long Writer, long Completed, decimal Value)[] expected) =>
        Assert.Equal(expected, top.EnumerateArray().Select(w => (w.GetProperty("writer_id").GetInt64(),
            w.GetProperty("completed_orders").GetInt64(), w.GetProperty("completed_value").GetDecimal())));

    /// <summary>One number per view that <see cref="SeedAsync"/> makes equal to its <c>n</c>.</summary>
    private static void AssertSeeded(string view, JsonElement data, int n)
    {
        var (query, column) = view switch
        {
            "admin-overview" => ("orders_by_status", "completed"),
            "admin-analytics" => ("summary", "completions"),
            "admin-reviews" => ("order_reviews", "total"),
            "admin-disputes" => ("disputes", "open"),
            "admin-refunds" => ("refunds", "pending"),
            _ => ("reminders", "sent_last_7_days"),
        };
        Assert.Equal(n, data.GetProperty(query).GetProperty(column).GetInt64());
    }

    /// <summary>n of everything the admin views count: completed orders, reviews, disputes, refunds, reminders.</summary>
    private async Task SeedAsync(long site, int n)
    {
        var now = DateTime.UtcNow;
        var client = await db.NewUserAsync(site, "client");
        var writer = await db.NewUserAsync(site, "writer");
        for (var i = 0; i < n; i++)
        {
            var order = await OrderAsync(site, client, "completed", 10m * (i + 1), writer, created: now.AddDays(-3), completed: now.AddDays(-2));
            await ReviewAsync("website_reviews", site, client, 5, approved: true, flagged: false);
            await ReviewAsync("writer_reviews", site, client, 4, approved: true, flagged: false, writer: writer, order: order);
            await ReviewAsync("order_reviews", site, client, 3, approved: false, flagged: false, order: order);
            await DisputeAsync(site, order, client, "open", now.AddDays(-1), null);
            await RefundAsync(site, order, client, 5m, "pending");
            var config = await ReminderConfigAsync(site, active: true);
            await SentReminderAsync(site, config, client, now.AddDays(-1));
        }
    }

    /// <summary>A website with rows in every table the admin views read; they must never count elsewhere.</summary>
    private async Task SeedOtherWebsiteAsync() => await SeedAsync(await db.NewWebsiteAsync(), 2);

    private async Task<Dictionary<long, string>> UsernamesAsync(long site)
    {
        await using var command = db.DataSource.CreateCommand("select id, username from users where website_id = @w");
        command.Parameters.AddWithValue("w", site);
        await using var reader = await command.ExecuteReaderAsync();
        var names = new Dictionary<long, string>();
        while (await reader.ReadAsync())
        {
            names[reader.GetInt64(0)] = reader.GetString(1);
        }

        return names;
    }

    private static DateTime Noon(DateTime today, int days) => today.AddDays(days).AddHours(12);

    private Task<long> OrderAsync(
        long site, long client, string status, decimal price, long? writer, bool paid = true, DateTime? created = null, DateTime? completed = null)
    {
        var at = created ?? DateTime.UtcNow;
        return db.InsertAsync(
            "insert into orders (website_id, client_id, writer_id, status, price, pages, is_paid, created_at, deadline, completed_at) " +
            "values (@w, @c, @wr, @s, @p, 1, @paid, @at, @at + interval '7 days', @done)",
            ("w", site), ("c", client), ("wr", writer), ("s", status), ("p", price), ("paid", paid), ("at", at), ("done", completed));
    }

    private Task<long> ReviewAsync(
        string table, long site, long reviewer, int rating, bool approved, bool flagged, long? writer = null, long? order = null) => table switch
    {
        "website_reviews" => db.InsertAsync(
            "insert into website_reviews (website_id, reviewer_id, rating, is_approved, is_flagged) values (@w, @r, @rating, @a, @f)",
            ("w", site), ("r", reviewer), ("rating", (short)rating), ("a", approved), ("f", flagged)),
        "writer_reviews" => db.InsertAsync(
            "insert into writer_reviews (website_id, reviewer_id, writer_id, order_id, rating, is_approved, is_flagged) " +
            "values (@w, @r, @wr, @o, @rating, @a, @f)",
            ("w", site), ("r", reviewer), ("wr", writer), ("o", order), ("rating", (short)rating), ("a", approved), ("f", flagged)),
        _ => db.InsertAsync(
            "insert into order_reviews (website_id, reviewer_id, order_id, rating, is_approved, is_flagged) values (@w, @r, @o, @rating, @a, @f)",
            ("w", site), ("r", reviewer), ("o", order), ("rating", (short)rating), ("a", approved), ("f", flagged)),
    };

    private Task<long> DisputeAsync(long site, long order, long raisedBy, string status, DateTime created, DateTime? resolved) =>
        db.InsertAsync(
            "insert into disputes (website_id, order_id, raised_by_id, status, created_at, resolved_at) values (@w, @o, @r, @s, @c, @res)",
            ("w", site), ("o", order), ("r", raisedBy), ("s", status), ("c", created), ("res", resolved));

    private Task<long> RefundAsync(long site, long order, long client, decimal amount, string status) =>
        db.InsertAsync(
            "insert into refunds (website_id, order_id, client_id, amount, status) values (@w, @o, @c, @a, @s)",
            ("w", site), ("o", order), ("c", client), ("a", amount), ("s", status));

    private Task<long> ReminderConfigAsync(long site, bool active) =>
        db.InsertAsync(
            "insert into reminder_configs (website_id, name, is_active) values (@w, 'test reminder', @a)",
            ("w", site), ("a", active));

    private Task<long> SentReminderAsync(long site, long config, long user, DateTime sentAt) =>
        db.InsertAsync(
            "insert into sent_reminders (website_id, config_id, user_id, sent_at) values (@w, @c, @u, @at)",
            ("w", site), ("c", config), ("u", user), ("at", sentAt));
}
