using System.Text.Json;
using static StatsCache.Integration.Tests.ViewAssert;

namespace StatsCache.Integration.Tests;

/// <summary>The writer views of the default catalog, number by number, on rows inserted by hand in a fresh website.</summary>
[Collection(DatabaseCollection.Name)]
public sealed class WriterViewTests(TestDatabase db, StatsCacheFactory factory)
{
    // writer-earnings

    [Fact]
    public async Task WriterEarningsListsEveryWeekAndMonthWithZerosForAWriterWithoutPayments()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var now = DateTime.UtcNow;

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-earnings");

        var weeks = data.GetProperty("weekly").EnumerateArray().ToList();
        Assert.Equal(12, weeks.Count);
        for (var i = 0; i < 12; i++)
        {
            AssertPeriod(weeks[i], "week_start", WeekStart(now, 11 - i), 0m, 0m, 0);
        }

        var months = data.GetProperty("monthly").EnumerateArray().ToList();
        var expectedMonths = MonthsFrom(WeekStart(now, 11), now);
        Assert.Equal(expectedMonths.Count, months.Count);
        for (var i = 0; i < months.Count; i++)
        {
            AssertPeriod(months[i], "month_start", expectedMonths[i], 0m, 0m, 0);
        }

        Row(data.GetProperty("totals"),
            ("earned_total", 0m), ("paid_total", 0m), ("pending_total", 0m), ("window_earned", 0m),
            ("this_week_earned", 0m), ("previous_week_earned", 0m), ("trend_pct", null));
    }

    [Fact]
    public async Task WriterEarningsSumsPaymentsPerWeekAndMonthAndComparesTheWindowsHalves()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var someoneElse = await db.NewUserAsync(site, "writer");
        var now = UtcNowSeconds();
        var thisWeek = InThisWeek(now);
        DateTime Wednesday(int weeksBack) => WeekStart(now, weeksBack).AddDays(2).AddHours(12);

        var payments = new List<(DateTime At, decimal Amount, string Status)>
        {
            (thisWeek, 10.00m, "paid"),
            (thisWeek, 5.00m, "pending"),
            (Wednesday(1), 20.00m, "pending"),
            (Wednesday(2), 7.50m, "paid"),
            (Wednesday(3), 12.50m, "paid"),
            (Wednesday(3), 100.00m, "cancelled"), // never counts
            (Wednesday(5), 30.00m, "paid"),       // before the 4-week window: all-time totals only
        };
        foreach (var (at, amount, status) in payments)
        {
            await InsertPaymentAsync(site, writer, amount, status, at);
        }

        await InsertPaymentAsync(site, someoneElse, 1000.00m, "paid", thisWeek);
        await InsertPaymentAsync(other, writer, 1000.00m, "paid", thisWeek); // same user id, another website

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-earnings", "weeks=4");

        var weeks = data.GetProperty("weekly").EnumerateArray().ToList();
        Assert.Equal(4, weeks.Count);
        AssertPeriod(weeks[0], "week_start", WeekStart(now, 3), 12.50m, 12.50m, 1);
        AssertPeriod(weeks[1], "week_start", WeekStart(now, 2), 7.50m, 7.50m, 1);
        AssertPeriod(weeks[2], "week_start", WeekStart(now, 1), 20.00m, 0m, 1);
        AssertPeriod(weeks[3], "week_start", WeekStart(now, 0), 15.00m, 10.00m, 2);

        // Months: the payments of the window that fall in each calendar month the window touches.
        var inWindow = payments.Where(p => p.Status != "cancelled" && p.At >= WeekStart(now, 3)).ToList();
        var months = data.GetProperty("monthly").EnumerateArray().ToList();
        var expectedMonths = MonthsFrom(WeekStart(now, 3), now);
        Assert.Equal(expectedMonths.Count, months.Count);
        for (var i = 0; i < months.Count; i++)
        {
            var these = inWindow.Where(p => p.At >= expectedMonths[i] && p.At < expectedMonths[i].AddMonths(1)).ToList();
            AssertPeriod(months[i], "month_start", expectedMonths[i],
                these.Sum(p => p.Amount), these.Where(p => p.Status == "paid").Sum(p => p.Amount), these.Count);
        }

        // Oldest half (weeks -3, -2) earned 20.00, newest half (weeks -1, 0) 35.00: +75.0 %.
        Row(data.GetProperty("totals"),
            ("earned_total", 85.00m), ("paid_total", 60.00m), ("pending_total", 25.00m), ("window_earned", 55.00m),
            ("this_week_earned", 15.00m), ("previous_week_earned", 20.00m), ("trend_pct", 75.0m));
    }

    [Fact]
    public async Task WriterEarningsWithOneWeekShowsOnlyTheCurrentWeekAndNoTrend()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var now = UtcNowSeconds();
        await InsertPaymentAsync(site, writer, 8.00m, "pending", InThisWeek(now));
        await InsertPaymentAsync(site, writer, 3.00m, "paid", WeekStart(now, 1).AddDays(3));

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-earnings", "weeks=1");

        AssertPeriod(Assert.Single(data.GetProperty("weekly").EnumerateArray()), "week_start", WeekStart(now, 0), 8.00m, 0m, 1);
        var months = data.GetProperty("monthly").EnumerateArray().ToList();
        var expectedMonths = MonthsFrom(WeekStart(now, 0), now);
        Assert.Equal(expectedMonths.Count, months.Count);
        for (var i = 0; i < months.Count; i++)
        {
            var inMonth = InThisWeek(now) >= expectedMonths[i] && InThisWeek(now) < expectedMonths[i].AddMonths(1);
            AssertPeriod(months[i], "month_start", expectedMonths[i], inMonth ? 8.00m : 0m, 0m, inMonth ? 1 : 0);
        }

        Row(data.GetProperty("totals"),
            ("earned_total", 11.00m), ("paid_total", 3.00m), ("pending_total", 8.00m), ("window_earned", 8.00m),
            ("this_week_earned", 8.00m), ("previous_week_earned", 3.00m), ("trend_pct", null));
    }

    [Fact]
    public async Task WriterEarningsWithFiftyTwoWeeksListsFiftyTwoWeeks()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var now = UtcNowSeconds();
        await InsertPaymentAsync(site, writer, 4.00m, "paid", WeekStart(now, 51).AddDays(3));  // oldest half
        await InsertPaymentAsync(site, writer, 6.00m, "paid", WeekStart(now, 10).AddDays(3));  // newest half
        await InsertPaymentAsync(site, writer, 9.00m, "paid", WeekStart(now, 52).AddDays(3));  // before the window

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-earnings", "weeks=52");

        var weeks = data.GetProperty("weekly").EnumerateArray().ToList();
        Assert.Equal(52, weeks.Count);
        for (var i = 0; i < 52; i++)
        {
            var amount = i switch { 0 => 4.00m, 41 => 6.00m, _ => 0m };
            AssertPeriod(weeks[i], "week_start", WeekStart(now, 51 - i), amount, amount, amount == 0m ? 0 : 1);
        }

        Row(data.GetProperty("totals"),
            ("earned_total", 19.00m), ("paid_total", 19.00m), ("pending_total", 0m), ("window_earned", 10.00m),
            ("this_week_earned", 0m), ("previous_week_earned", 0m), ("trend_pct", 50.0m));
    }

    // writer-payment-info

    [Fact]
    public async Task WriterPaymentInfoOfAWriterWithoutProfileOrPaymentsIsNullsAndZeros()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        await InsertLevelsAsync(site);

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-payment-info");

        AssertLevel(data.GetProperty("level"), null, null);
        Row(data.GetProperty("payments"),
            ("pending_amount", 0m), ("pending_payments", 0), ("paid_amount", 0m), ("paid_payments", 0), ("total_amount", 0m), ("last_paid_at", null));
    }

    [Fact]
    public async Task WriterPaymentInfoShowsLevelRateNextLevelAndPendingAndPaidEarnings()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var someoneElse = await db.NewUserAsync(site, "writer");
        var levels = await InsertLevelsAsync(site);
        await InsertLevelsAsync(other, ("Other", 3, 99.00m, 1)); // a rank-3 level of another website is not the next level
        await SetLevelAsync(site, writer, levels[1]);
        var now = UtcNowSeconds();

        await InsertPaymentAsync(site, writer, 10.00m, "pending", now.AddDays(-2));
        await InsertPaymentAsync(site, writer, 15.25m, "pending", now.AddDays(-1));
        await InsertPaymentAsync(site, writer, 20.00m, "paid", now.AddDays(-30), paidAt: now.AddDays(-20));
        await InsertPaymentAsync(site, writer, 30.00m, "paid", now.AddDays(-25), paidAt: now.AddDays(-10));
        await InsertPaymentAsync(site, writer, 99.00m, "cancelled", now.AddDays(-9), paidAt: now.AddDays(-5));
        await InsertPaymentAsync(site, someoneElse, 500.00m, "paid", now.AddDays(-3), paidAt: now.AddDays(-1));
        await InsertPaymentAsync(other, writer, 500.00m, "pending", now.AddDays(-3)); // same user id, another website

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-payment-info");

        AssertLevel(data.GetProperty("level"), (levels[1], "Intermediate", 2, 8.00m), ("Expert", 3, 13.00m, 150));
        Row(data.GetProperty("payments"),
            ("pending_amount", 25.25m), ("pending_payments", 2), ("paid_amount", 50.00m), ("paid_payments", 2), ("total_amount", 75.25m),
            ("last_paid_at", now.AddDays(-10)));
    }

    [Fact]
    public async Task WriterPaymentInfoAtTheTopLevelHasNoNextLevel()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var levels = await InsertLevelsAsync(site);
        await SetLevelAsync(site, writer, levels[2]);

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-payment-info");

        AssertLevel(data.GetProperty("level"), (levels[2], "Expert", 3, 13.00m), null);
    }

    // writer-performance

    [Fact]
    public async Task WriterPerformanceOfAWriterWithoutOrdersOrReviewsIsZerosAndNullRates()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-performance");

        AssertPerformance(data.GetProperty("orders"), assigned: 0, active: 0, completed: 0, onTime: 0, rate: null, revisions: 0,
            withRevisions: 0, disputed: 0, cancelled: 0, refunded: 0, disputes: 0, openDisputes: 0);
        Row(data.GetProperty("reviews"),
            ("reviews", 0), ("average_rating", null), ("five_star", 0), ("four_star", 0), ("three_star", 0), ("two_star", 0), ("one_star", 0));
    }

    [Fact]
    public async Task WriterPerformanceCountsCompletedOnTimeRevisionsAndDisputesOfTheWritersOrdersOnly()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var someoneElse = await db.NewUserAsync(site, "writer");
        var client = await db.NewUserAsync(site, "client");
        var deadline = UtcNowSeconds().AddDays(-10);

        await InsertWriterOrderAsync(site, client, writer, "completed", deadline, completedAt: deadline.AddHours(-5), revisions: 1);
        await InsertWriterOrderAsync(site, client, writer, "completed", deadline, completedAt: deadline); // at the deadline is on time
        await InsertWriterOrderAsync(site, client, writer, "completed", deadline, completedAt: deadline.AddHours(1), revisions: 2);
        await InsertWriterOrderAsync(site, client, writer, "in_progress", deadline);
        await InsertWriterOrderAsync(site, client, writer, "submitted", deadline);
        await InsertWriterOrderAsync(site, client, writer, "revision", deadline, revisions: 1);
        var disputed = await InsertWriterOrderAsync(site, client, writer, "disputed", deadline);
        await InsertWriterOrderAsync(site, client, writer, "cancelled", deadline);
        var refunded = await InsertWriterOrderAsync(site, client, writer, "refunded", deadline);
        var othersOrder = await InsertWriterOrderAsync(site, client, someoneElse, "disputed", deadline, revisions: 4);
        var unassigned = await InsertWriterOrderAsync(site, client, null, "available", deadline);
        await InsertWriterOrderAsync(other, client, writer, "completed", deadline, completedAt: deadline, revisions: 3); // another website

        await InsertDisputeAsync(site, disputed, client, "open");
        await InsertDisputeAsync(site, disputed, client, "resolved");
        await InsertDisputeAsync(site, refunded, writer, "in_review");
        await InsertDisputeAsync(site, othersOrder, client, "open");
        await InsertDisputeAsync(site, unassigned, client, "open");

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-performance");

        // 2 of 3 completed on time: 66.7 %. Revisions 1 + 2 + 1 = 4 on 3 orders.
        AssertPerformance(data.GetProperty("orders"), assigned: 9, active: 3, completed: 3, onTime: 2, rate: 66.7m, revisions: 4,
            withRevisions: 3, disputed: 1, cancelled: 1, refunded: 1, disputes: 3, openDisputes: 2);
    }

    [Fact]
    public async Task WriterPerformanceAveragesApprovedUnflaggedReviewsOfTheWriter()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var someoneElse = await db.NewUserAsync(site, "writer");
        var client = await db.NewUserAsync(site, "client");

        await InsertReviewAsync(site, client, writer, 5, approved: true);
        await InsertReviewAsync(site, client, writer, 4, approved: true);
        await InsertReviewAsync(site, client, writer, 4, approved: true);
        await InsertReviewAsync(site, client, writer, 1, approved: false);
        await InsertReviewAsync(site, client, writer, 1, approved: true, flagged: true);
        await InsertReviewAsync(site, client, someoneElse, 1, approved: true);
        await InsertReviewAsync(other, client, writer, 1, approved: true); // same user id, another website

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-performance");

        // (5 + 4 + 4) / 3 = 4.33
        Row(data.GetProperty("reviews"),
            ("reviews", 3), ("average_rating", 4.33m), ("five_star", 1), ("four_star", 2), ("three_star", 0), ("two_star", 0), ("one_star", 0));
        AssertPerformance(data.GetProperty("orders"), assigned: 0, active: 0, completed: 0, onTime: 0, rate: null, revisions: 0,
            withRevisions: 0, disputed: 0, cancelled: 0, refunded: 0, disputes: 0, openDisputes: 0);
    }

    // writer-order-queue

    [Fact]
    public async Task WriterOrderQueueOfAWriterWithoutLevelOnAQuietSiteIsEmpty()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-order-queue");

        Assert.Empty(data.GetProperty("available").EnumerateArray());
        Assert.Empty(data.GetProperty("requests").EnumerateArray());
        Row(data.GetProperty("counts"), ("available", 0), ("pending_requests", 0));
    }

    [Fact]
    public async Task WriterOrderQueueShowsAvailableOrdersUpToTheWritersLevelAndTheirPendingRequests()
    {
        var site = await db.NewWebsiteAsync();
        var other = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var someoneElse = await db.NewUserAsync(site, "writer");
        var client = await db.NewUserAsync(site, "client");
        var levels = await InsertLevelsAsync(site);
        var otherLevels = await InsertLevelsAsync(other);
        await SetLevelAsync(site, writer, levels[1]); // Intermediate, rank 2, 8.00 per page
        var now = UtcNowSeconds();
        var deadline = now.AddDays(5);

        var a = await InsertQueueOrderAsync(site, client, null, "available", null, pages: 3, now.AddHours(-1), deadline);
        var b = await InsertQueueOrderAsync(site, client, null, "available", levels[0], pages: 2, now.AddHours(-2), deadline.AddDays(1));
        var c = await InsertQueueOrderAsync(site, client, null, "available", levels[1], pages: 5, now.AddHours(-3), deadline.AddDays(2));
        await InsertQueueOrderAsync(site, client, null, "available", levels[2], pages: 1, now.AddMinutes(-10), deadline); // level too high
        await InsertQueueOrderAsync(site, client, null, "pending", null, pages: 1, now.AddMinutes(-10), deadline);       // not yet available
        await InsertQueueOrderAsync(site, client, someoneElse, "available", null, pages: 1, now.AddMinutes(-10), deadline); // has a writer
        var elsewhere = await InsertQueueOrderAsync(other, client, null, "available", otherLevels[0], pages: 1, now.AddMinutes(-10), deadline);
        var taken = await InsertQueueOrderAsync(site, client, writer, "in_progress", null, pages: 4, now.AddDays(-1), deadline);

        var onB = await InsertRequestAsync(site, b, writer, "pending", now.AddMinutes(-90));
        await InsertRequestAsync(site, a, writer, "rejected", now.AddMinutes(-50));
        await InsertRequestAsync(site, c, someoneElse, "pending", now.AddMinutes(-40));
        var onTaken = await InsertRequestAsync(site, taken, writer, "pending", now.AddMinutes(-30));
        await InsertRequestAsync(site, taken, writer, "accepted", now.AddMinutes(-20));
        await InsertRequestAsync(other, elsewhere, writer, "pending", now.AddMinutes(-5)); // another website

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-order-queue");

        var available = data.GetProperty("available").EnumerateArray().ToList();
        Assert.Equal(3, available.Count);
        AssertAvailable(available[0], a, now.AddHours(-1), deadline, 3, null, 24.00m, requested: false);
        AssertAvailable(available[1], b, now.AddHours(-2), deadline.AddDays(1), 2, (levels[0], "Beginner", 1), 16.00m, requested: true);
        AssertAvailable(available[2], c, now.AddHours(-3), deadline.AddDays(2), 5, (levels[1], "Intermediate", 2), 40.00m, requested: false);

        var requests = data.GetProperty("requests").EnumerateArray().ToList();
        Assert.Equal(2, requests.Count);
        Row(requests[0], ("request_id", onTaken), ("requested_at", now.AddMinutes(-30)), ("order_id", taken),
            ("order_status", "in_progress"), ("pages", 4), ("deadline", deadline));
        Row(requests[1], ("request_id", onB), ("requested_at", now.AddMinutes(-90)), ("order_id", b),
            ("order_status", "available"), ("pages", 2), ("deadline", deadline.AddDays(1)));

        Row(data.GetProperty("counts"), ("available", 3), ("pending_requests", 2));
    }

    [Fact]
    public async Task WriterOrderQueueOfAWriterWithoutLevelShowsOnlyOrdersRequiringNoLevelWithoutPay()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var client = await db.NewUserAsync(site, "client");
        var levels = await InsertLevelsAsync(site);
        var now = UtcNowSeconds();
        var open = await InsertQueueOrderAsync(site, client, null, "available", null, pages: 2, now.AddHours(-1), now.AddDays(3));
        await InsertQueueOrderAsync(site, client, null, "available", levels[0], pages: 2, now.AddHours(-1), now.AddDays(3));

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-order-queue");

        AssertAvailable(Assert.Single(data.GetProperty("available").EnumerateArray()), open, now.AddHours(-1), now.AddDays(3), 2, null, null, requested: false);
        Row(data.GetProperty("counts"), ("available", 1), ("pending_requests", 0));
    }

    [Fact]
    public async Task WriterOrderQueueListsTheFiftyNewestAvailableOrdersAndCountsThemAll()
    {
        var site = await db.NewWebsiteAsync();
        var writer = await db.NewUserAsync(site, "writer");
        var client = await db.NewUserAsync(site, "client");
        var now = UtcNowSeconds();
        // 55 orders, order k created k hours ago.
        await db.ExecuteAsync(
            "insert into orders (website_id, client_id, status, price, pages, is_paid, created_at, deadline) " +
            "select @w, @c, 'available', 10, 1, true, @now - k * interval '1 hour', @now + interval '7 days' from generate_series(1, 55) k",
            ("w", site), ("c", client), ("now", now));

        var data = await factory.GetDataAsync(site, "writer", writer, "writer-order-queue");

        var available = data.GetProperty("available").EnumerateArray().ToList();
        Assert.Equal(50, available.Count);
        Assert.Equal(Enumerable.Range(1, 50).Select(k => now.AddHours(-k)), available.Select(o => o.GetProperty("created_at").GetDateTime().ToUniversalTime()));
        Row(data.GetProperty("counts"), ("available", 55), ("pending_requests", 0));
    }

    private static void AssertPeriod(JsonElement row, string startColumn, DateTime start, decimal earned, decimal paid, int count) =>
        Row(row, (startColumn, DateOnly.FromDateTime(start)), ("earned", earned), ("paid", paid), ("payments", count));

    private static void AssertLevel(
        JsonElement row, (long Id, string Name, int Rank, decimal Rate)? level, (string Name, int Rank, decimal Rate, int MinCompleted)? next) =>
        Row(row,
            ("level_id", level?.Id), ("level_name", level?.Name), ("level_rank", level?.Rank), ("rate_per_page", level?.Rate),
            ("next_level_name", next?.Name), ("next_level_rank", next?.Rank), ("next_level_rate_per_page", next?.Rate),
            ("next_level_min_completed_orders", next?.MinCompleted));

    private static void AssertPerformance(
        JsonElement row, int assigned, int active, int completed, int onTime, decimal? rate, int revisions, int withRevisions,
        int disputed, int cancelled, int refunded, int disputes, int openDisputes) =>
        Row(row,
            ("assigned_orders", assigned), ("active", active), ("completed", completed), ("completed_on_time", onTime), ("on_time_rate", rate),
            ("revisions", revisions), ("orders_with_revisions", withRevisions), ("disputed", disputed), ("cancelled", cancelled),
            ("refunded", refunded), ("disputes", disputes), ("open_disputes", openDisputes));

    private static void AssertAvailable(
        JsonElement row, long order, DateTime createdAt, DateTime deadline, int pages, (long Id, string Name, int Rank)? required, decimal? pay, bool requested) =>
        Row(row,
            ("order_id", order), ("created_at", createdAt), ("deadline", deadline), ("pages", pages),
            ("required_level_id", required?.Id), ("required_level_name", required?.Name), ("required_level_rank", required?.Rank),
            ("pay", pay), ("requested", requested));

    // Halfway between Monday 00:00 UTC of this week and now: in the current week, and in the past.
    private static DateTime InThisWeek(DateTime now)
    {
        var start = WeekStart(now, 0);
        var middle = start.AddTicks((now - start).Ticks / 2);
        return middle.AddTicks(-(middle.Ticks % TimeSpan.TicksPerSecond));
    }

    // The first day of every calendar month from the one holding 'since' to the current one.
    private static List<DateTime> MonthsFrom(DateTime since, DateTime now)
    {
        var months = new List<DateTime>();
        for (var m = new DateTime(since.Year, since.Month, 1, 0, 0, 0, DateTimeKind.Utc); m <= now; m = m.AddMonths(1))
        {
            months.Add(m);
        }

        return months;
    }

    private Task<long> InsertPaymentAsync(long site, long writer, decimal amount, string status, DateTime createdAt, DateTime? paidAt = null) =>
        db.InsertAsync(
            "insert into writer_payments (website_id, writer_id, amount, status, created_at, paid_at) values (@w, @u, @a, @s, @at, @paid)",
            ("w", site), ("u", writer), ("a", amount), ("s", status), ("at", createdAt), ("paid", paidAt));

    private static readonly (string Name, int Rank, decimal Rate, int MinCompleted)[] DefaultLevels =
        [("Beginner", 1, 6.00m, 0), ("Intermediate", 2, 8.00m, 10), ("Expert", 3, 13.00m, 150)];

    private async Task<List<long>> InsertLevelsAsync(long site, params (string Name, int Rank, decimal Rate, int MinCompleted)[] levels)
    {
        var ids = new List<long>();
        foreach (var (name, rank, rate, minCompleted) in levels.Length > 0 ? levels : DefaultLevels)
        {
            ids.Add(await db.InsertAsync(
                "insert into writer_levels (website_id, name, rank, rate_per_page, min_completed_orders) values (@w, @n, @r, @rate, @m)",
                ("w", site), ("n", name), ("r", rank), ("rate", rate), ("m", minCompleted)));
        }

        return ids;
    }

    private Task SetLevelAsync(long site, long writer, long level) =>
        db.ExecuteAsync("insert into writer_profiles (user_id, website_id, level_id) values (@u, @w, @l)", ("u", writer), ("w", site), ("l", level));

    private Task<long> InsertWriterOrderAsync(
        long site, long client, long? writer, string status, DateTime deadline, DateTime? completedAt = null, int revisions = 0) =>
        db.InsertAsync(
            "insert into orders (website_id, client_id, writer_id, status, price, pages, is_paid, created_at, deadline, completed_at, revision_count) " +
            "values (@w, @c, @u, @s, 20, 2, true, @dl - interval '7 days', @dl, @done, @rev)",
            ("w", site), ("c", client), ("u", writer), ("s", status), ("dl", deadline), ("done", completedAt), ("rev", revisions));

    private Task<long> InsertQueueOrderAsync(
        long site, long client, long? writer, string status, long? level, int pages, DateTime createdAt, DateTime deadline) =>
        db.InsertAsync(
            "insert into orders (website_id, client_id, writer_id, status, price, pages, writer_level_id, is_paid, created_at, deadline) " +
            "values (@w, @c, @u, @s, 30, @p, @l, true, @at, @dl)",
            ("w", site), ("c", client), ("u", writer), ("s", status), ("p", pages), ("l", level), ("at", createdAt), ("dl", deadline));

    private Task<long> InsertRequestAsync(long site, long order, long writer, string status, DateTime at) =>
        db.InsertAsync(
            "insert into order_requests (website_id, order_id, writer_id, status, created_at) values (@w, @o, @u, @s, @at)",
            ("w", site), ("o", order), ("u", writer), ("s", status), ("at", at));

    private Task InsertDisputeAsync(long site, long order, long raisedBy, string status) =>
        db.InsertAsync(
            "insert into disputes (website_id, order_id, raised_by_id, status) values (@w, @o, @r, @s)",
            ("w", site), ("o", order), ("r", raisedBy), ("s", status));

    private Task InsertReviewAsync(long site, long reviewer, long writer, int rating, bool approved, bool flagged = false) =>
        db.InsertAsync(
            "insert into writer_reviews (website_id, reviewer_id, writer_id, rating, is_approved, is_flagged) values (@w, @r, @u, @rating, @a, @f)",
            ("w", site), ("r", reviewer), ("u", writer), ("rating", (short)rating), ("a", approved), ("f", flagged));
}
