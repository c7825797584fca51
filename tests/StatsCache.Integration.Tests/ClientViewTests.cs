using System.Net;
using System.Text.Json;
using static StatsCache.Integration.Tests.ViewAssert;

namespace StatsCache.Integration.Tests;

/// <summary>The client views of the default catalog, number by number, on rows inserted by hand in a fresh website.</summary>
[Collection(DatabaseCollection.Name)]
public sealed class ClientViewTests(TestDatabase db, StatsCacheFactory factory)
{
    // client-stats

    [Fact]
    public async Task ClientStatsOfAClientWithoutOrdersIsZerosAndNoLastOrder()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");

        var data = await factory.GetDataAsync(site, "client", client, "client-stats");

        Row(data.GetProperty("summary"),
            ("total_orders", 0), ("pending", 0), ("available", 0), ("in_progress", 0), ("submitted", 0), ("revision", 0),
            ("completed", 0), ("disputed", 0), ("cancelled", 0), ("refunded", 0), ("total_spent", 0m), ("average_order_value", 0m),
            ("last_order_at", null), ("last_order_id", null), ("last_order_status", null));
    }

    [Fact]
    public async Task ClientStatsCountsEveryStatusAndSpendsOnlyPaidOrdersThatWereNotCancelledOrRefunded()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var someoneElse = await db.NewUserAsync(site, "client");
        var now = UtcNowSeconds();

        await InsertOrderAsync(site, client, "pending", 5.00m, paid: false, now.AddDays(-9));
        await InsertOrderAsync(site, client, "available", 6.00m, paid: true, now.AddDays(-8));
        await InsertOrderAsync(site, client, "in_progress", 7.00m, paid: true, now.AddDays(-7));
        await InsertOrderAsync(site, client, "submitted", 8.00m, paid: true, now.AddDays(-6));
        await InsertOrderAsync(site, client, "revision", 9.00m, paid: true, now.AddDays(-5));
        await InsertOrderAsync(site, client, "completed", 10.00m, paid: true, now.AddDays(-4));
        await InsertOrderAsync(site, client, "completed", 11.50m, paid: false, now.AddDays(-4)); // unpaid: not spent
        await InsertOrderAsync(site, client, "disputed", 12.00m, paid: true, now.AddDays(-3));
        await InsertOrderAsync(site, client, "cancelled", 50.00m, paid: true, now.AddDays(-2));
        var last = await InsertOrderAsync(site, client, "refunded", 60.00m, paid: true, now.AddDays(-1));
        await InsertOrderAsync(site, someoneElse, "completed", 100.00m, paid: true, now);
        await InsertOrderAsync(other, client, "completed", 200.00m, paid: true, now); // same user id, another website

        var data = await factory.GetDataAsync(site, "client", client, "client-stats");

        // Spent: 6 + 7 + 8 + 9 + 10 + 12 = 52 over 6 orders.
        Row(data.GetProperty("summary"),
            ("total_orders", 10), ("pending", 1), ("available", 1), ("in_progress", 1), ("submitted", 1), ("revision", 1),
            ("completed", 2), ("disputed", 1), ("cancelled", 1), ("refunded", 1), ("total_spent", 52.00m), ("average_order_value", 8.67m),
            ("last_order_at", now.AddDays(-1)), ("last_order_id", last), ("last_order_status", "refunded"));
    }

    // client-loyalty

    [Fact]
    public async Task ClientLoyaltyOfAClientWithoutTransactionsStartsInTheLowestTier()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        await InsertTiersAsync(site, ("Bronze", 0), ("Silver", 500), ("Gold", 2000));

        var data = await factory.GetDataAsync(site, "client", client, "client-loyalty");

        Row(data.GetProperty("summary"),
            ("balance", 0), ("earned", 0), ("redeemed", 0), ("expired", 0), ("adjusted", 0), ("transactions", 0), ("last_transaction_at", null),
            ("tier_name", "Bronze"), ("tier_min_points", 0), ("next_tier_name", "Silver"), ("next_tier_min_points", 500), ("points_to_next_tier", 500));
    }

    [Fact]
    public async Task ClientLoyaltyShowsBalanceTierAndPointsToNextTier()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var someoneElse = await db.NewUserAsync(site, "client");
        await InsertTiersAsync(site, ("Bronze", 0), ("Silver", 500), ("Gold", 2000), ("Platinum", 5000));
        await InsertTiersAsync(other, ("Other Gold", 550), ("Other Platinum", 600));
        var now = UtcNowSeconds();

        await InsertPointsAsync(site, client, 300, "earned", now.AddDays(-30));
        await InsertPointsAsync(site, client, 400, "earned", now.AddDays(-20));
        await InsertPointsAsync(site, client, -100, "redeemed", now.AddDays(-10));
        await InsertPointsAsync(site, client, -50, "expired", now.AddDays(-5));
        await InsertPointsAsync(site, client, 20, "adjusted", now.AddDays(-3));
        await InsertPointsAsync(site, client, -10, "adjusted", now.AddDays(-2));
        await InsertPointsAsync(site, someoneElse, 9000, "earned", now);
        await InsertPointsAsync(other, client, 9000, "earned", now); // same user id, another website

        var data = await factory.GetDataAsync(site, "client", client, "client-loyalty");

        // 300 + 400 - 100 - 50 + 20 - 10 = 560: Silver (500), Gold at 2000 is 1440 away.
        Row(data.GetProperty("summary"),
            ("balance", 560), ("earned", 700), ("redeemed", 100), ("expired", 50), ("adjusted", 10), ("transactions", 6),
            ("last_transaction_at", now.AddDays(-2)),
            ("tier_name", "Silver"), ("tier_min_points", 500), ("next_tier_name", "Gold"), ("next_tier_min_points", 2000), ("points_to_next_tier", 1440));
    }

    [Fact]
    public async Task ClientLoyaltyAtTheTopTierHasNoNextTier()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        await InsertTiersAsync(site, ("Bronze", 0), ("Silver", 500), ("Platinum", 5000));
        var now = UtcNowSeconds();
        await InsertPointsAsync(site, client, 5000, "earned", now.AddDays(-4));
        await InsertPointsAsync(site, client, 1000, "earned", now.AddDays(-3));

        var data = await factory.GetDataAsync(site, "client", client, "client-loyalty");

        Row(data.GetProperty("summary"),
            ("balance", 6000), ("earned", 6000), ("redeemed", 0), ("expired", 0), ("adjusted", 0), ("transactions", 2),
            ("last_transaction_at", now.AddDays(-3)),
            ("tier_name", "Platinum"), ("tier_min_points", 5000), ("next_tier_name", null), ("next_tier_min_points", null), ("points_to_next_tier", null));
    }

    [Fact]
    public async Task ClientLoyaltyBelowTheLowestTierOrOnASiteWithoutTiersHasNoTier()
    {
        var withTiers = await db.NewWebsiteAsync();
        var withoutTiers = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(withTiers, "client");
        var client2 = await db.NewUserAsync(withoutTiers, "client");
        await InsertTiersAsync(withTiers, ("Member", 100), ("Gold", 1000));
        var now = UtcNowSeconds();
        await InsertPointsAsync(withTiers, client, 40, "earned", now.AddDays(-1));
        await InsertPointsAsync(withoutTiers, client2, 40, "earned", now.AddDays(-1));

        var below = await factory.GetDataAsync(withTiers, "client", client, "client-loyalty");
        var none = await factory.GetDataAsync(withoutTiers, "client", client2, "client-loyalty");

        Row(below.GetProperty("summary"),
            ("balance", 40), ("earned", 40), ("redeemed", 0), ("expired", 0), ("adjusted", 0), ("transactions", 1),
            ("last_transaction_at", now.AddDays(-1)),
            ("tier_name", null), ("tier_min_points", null), ("next_tier_name", "Member"), ("next_tier_min_points", 100), ("points_to_next_tier", 60));
        Row(none.GetProperty("summary"),
            ("balance", 40), ("earned", 40), ("redeemed", 0), ("expired", 0), ("adjusted", 0), ("transactions", 1),
            ("last_transaction_at", now.AddDays(-1)),
            ("tier_name", null), ("tier_min_points", null), ("next_tier_name", null), ("next_tier_min_points", null), ("points_to_next_tier", null));
    }

    // client-analytics

    [Fact]
    public async Task ClientAnalyticsListsEveryMonthOfTheWindowWithZerosForAClientWithoutOrders()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var now = DateTime.UtcNow;

        var data = await factory.GetDataAsync(site, "client", client, "client-analytics");

        var months = data.GetProperty("monthly").EnumerateArray().ToList();
        Assert.Equal(12, months.Count);
        for (var i = 0; i < 12; i++)
        {
            AssertMonth(months[i], MonthStart(now, 11 - i), orders: 0, completed: 0, cancelled: 0, refunded: 0, spent: 0m, paidOrders: 0, average: 0m);
        }

        Row(data.GetProperty("totals"),
            ("orders", 0), ("completed", 0), ("cancelled", 0), ("refunded", 0), ("spent", 0m), ("paid_orders", 0),
            ("average_order_value", 0m), ("average_monthly_spent", 0m));
    }

    [Fact]
    public async Task ClientAnalyticsCountsOrdersAndSpendingInTheMonthTheyWerePlaced()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var someoneElse = await db.NewUserAsync(site, "client");
        var now = UtcNowSeconds();
        var thisMonth = InThisMonth(now);
        var lastMonth = MonthStart(now, 1).AddDays(14);

        await InsertOrderAsync(site, client, "completed", 10.00m, paid: true, thisMonth);
        await InsertOrderAsync(site, client, "completed", 20.00m, paid: true, thisMonth);
        await InsertOrderAsync(site, client, "in_progress", 12.00m, paid: true, thisMonth);
        await InsertOrderAsync(site, client, "cancelled", 50.00m, paid: true, thisMonth);
        await InsertOrderAsync(site, client, "pending", 5.00m, paid: false, thisMonth);
        await InsertOrderAsync(site, client, "refunded", 40.00m, paid: true, lastMonth);
        await InsertOrderAsync(site, client, "completed", 16.00m, paid: true, lastMonth);
        await InsertOrderAsync(site, client, "completed", 100.00m, paid: true, MonthStart(now, 3).AddDays(14)); // before the window
        await InsertOrderAsync(site, someoneElse, "completed", 70.00m, paid: true, thisMonth);
        await InsertOrderAsync(other, client, "completed", 80.00m, paid: true, thisMonth);

        var data = await factory.GetDataAsync(site, "client", client, "client-analytics", "months=3");

        var months = data.GetProperty("monthly").EnumerateArray().ToList();
        Assert.Equal(3, months.Count);
        AssertMonth(months[0], MonthStart(now, 2), orders: 0, completed: 0, cancelled: 0, refunded: 0, spent: 0m, paidOrders: 0, average: 0m);
        AssertMonth(months[1], MonthStart(now, 1), orders: 2, completed: 1, cancelled: 0, refunded: 1, spent: 16.00m, paidOrders: 1, average: 16.00m);
        AssertMonth(months[2], MonthStart(now, 0), orders: 5, completed: 2, cancelled: 1, refunded: 0, spent: 42.00m, paidOrders: 3, average: 14.00m);
        // 58.00 over 4 paying orders; 58.00 / 3 months = 19.33.
        Row(data.GetProperty("totals"),
            ("orders", 7), ("completed", 3), ("cancelled", 1), ("refunded", 1), ("spent", 58.00m), ("paid_orders", 4),
            ("average_order_value", 14.50m), ("average_monthly_spent", 19.33m));
    }

    [Fact]
    public async Task ClientAnalyticsWithOneMonthShowsOnlyTheCurrentMonth()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var now = UtcNowSeconds();
        await InsertOrderAsync(site, client, "completed", 25.00m, paid: true, InThisMonth(now));
        await InsertOrderAsync(site, client, "completed", 30.00m, paid: true, MonthStart(now, 1).AddDays(14));

        var data = await factory.GetDataAsync(site, "client", client, "client-analytics", "months=1");

        AssertMonth(Assert.Single(data.GetProperty("monthly").EnumerateArray()), MonthStart(now, 0),
            orders: 1, completed: 1, cancelled: 0, refunded: 0, spent: 25.00m, paidOrders: 1, average: 25.00m);
        Row(data.GetProperty("totals"),
            ("orders", 1), ("completed", 1), ("cancelled", 0), ("refunded", 0), ("spent", 25.00m), ("paid_orders", 1),
            ("average_order_value", 25.00m), ("average_monthly_spent", 25.00m));
    }

    [Fact]
    public async Task ClientAnalyticsWithTwentyFourMonthsReachesBackTwentyThreeMonths()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var now = UtcNowSeconds();
        await InsertOrderAsync(site, client, "completed", 24.00m, paid: true, MonthStart(now, 23).AddDays(14));
        await InsertOrderAsync(site, client, "completed", 99.00m, paid: true, MonthStart(now, 24).AddDays(14)); // before the window

        var data = await factory.GetDataAsync(site, "client", client, "client-analytics", "months=24");

        var months = data.GetProperty("monthly").EnumerateArray().ToList();
        Assert.Equal(24, months.Count);
        AssertMonth(months[0], MonthStart(now, 23), orders: 1, completed: 1, cancelled: 0, refunded: 0, spent: 24.00m, paidOrders: 1, average: 24.00m);
        for (var i = 1; i < 24; i++)
        {
            AssertMonth(months[i], MonthStart(now, 23 - i), orders: 0, completed: 0, cancelled: 0, refunded: 0, spent: 0m, paidOrders: 0, average: 0m);
        }

        Row(data.GetProperty("totals"),
            ("orders", 1), ("completed", 1), ("cancelled", 0), ("refunded", 0), ("spent", 24.00m), ("paid_orders", 1),
            ("average_order_value", 24.00m), ("average_monthly_spent", 1.00m));
    }

    [Theory]
    [InlineData("months=0")]
    [InlineData("months=25")]
    public async Task ClientAnalyticsRejectsMonthsOutsideOneToTwentyFour(string query)
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var response = await factory.ClientFor(site, "client", client).GetAsync($"/api/dashboards/client-analytics?{query}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    private static void AssertMonth(
        JsonElement row, DateTime monthStart, int orders, int completed, int cancelled, int refunded, decimal spent, int paidOrders, decimal average) =>
        Row(row,
            ("month_start", DateOnly.FromDateTime(monthStart)), ("orders", orders), ("completed", completed), ("cancelled", cancelled),
            ("refunded", refunded), ("spent", spent), ("paid_orders", paidOrders), ("average_order_value", average));

    // Halfway between the first instant of the current month and now: in the current month, and in the past.
    private static DateTime InThisMonth(DateTime now)
    {
        var start = MonthStart(now, 0);
        var middle = start.AddTicks((now - start).Ticks / 2);
        return middle.AddTicks(-(middle.Ticks % TimeSpan.TicksPerSecond));
    }

    private Task<long> InsertOrderAsync(long site, long client, string status, decimal price, bool paid, DateTime createdAt) =>
        db.InsertAsync(
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "values (@w, @c, @s, @p, 1, @paid, @at, @at + interval '7 days')",
            ("w", site), ("c", client), ("s", status), ("p", price), ("paid", paid), ("at", createdAt));

    private Task<long> InsertPointsAsync(long site, long client, int points, string type, DateTime at) =>
        db.InsertAsync(
            "insert into loyalty_transactions (website_id, client_id, points, transaction_type, created_at) values (@w, @c, @p, @t, @at)",
            ("w", site), ("c", client), ("p", points), ("t", type), ("at", at));

    private async Task InsertTiersAsync(long site, params (string Name, int MinPoints)[] tiers)
    {
        foreach (var (name, minPoints) in tiers)
        {
            await db.InsertAsync("insert into loyalty_tiers (website_id, name, min_points) values (@w, @n, @m)",
                ("w", site), ("n", name), ("m", minPoints));
        }
    }
}
