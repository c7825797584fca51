using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using StatsCache.WebHost.Live;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// <c>GET /api/dashboards/live</c> on a co-hosted silo, real PostgreSQL and the change feed: first events, events
/// pushed within a second of a write, one watch and one load for many streams, heartbeats, the token's expiry, the
/// per-caller cap, and streams freed when their clients go.
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class LiveTests(TestDatabase db, ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task FirstEventsAreTheCurrentAnswersThenAWriteArrivesWithinASecond()
    {
        await using var web = await WithChangeFeedAsync();
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        await db.NewOrderAsync(site, client);
        var http = web.ClientFor(site, "client", client);

        await using var live = await EventStream.OpenAsync(http, "/api/dashboards/live?view=client-stats&view=client-analytics&months=3");
        Assert.Equal("text/event-stream", live.Response.Content.Headers.ContentType?.MediaType);
        var first = await live.NextEventAsync();
        var second = await live.NextEventAsync();
        Assert.Equal(("client-stats", "client-analytics"), (first.Name, second.Name));
        Assert.Equal(3, second.Json.GetProperty("parameters").GetProperty("months").GetInt32());
        foreach (var (received, path) in new[] { (first, "/api/dashboards/client-stats"), (second, "/api/dashboards/client-analytics?months=3") })
        {
            using var single = await http.GetAsync(path);
            Assert.Equal(single.Headers.ETag!.ToString(), received.Id);
            var body = await single.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Equal(body.GetProperty("data").GetRawText(), received.Json.GetProperty("data").GetRawText());
        }

        Assert.Equal(1, TotalOrders(first));
        var written = Stopwatch.StartNew();
        await db.NewOrderAsync(site, client);
        var update = await live.NextEventAsync(Deadline, "client-stats"); // the order changes client-analytics too
        var visible = written.Elapsed;
        output.WriteLine($"write to event: {visible.TotalMilliseconds:F0} ms");
        Assert.Equal(2, TotalOrders(update));
        Assert.NotEqual(first.Id, update.Id);
        Assert.True(visible < TimeSpan.FromSeconds(1), $"The event came {visible.TotalMilliseconds:F0} ms after the write.");
    }

    [Fact]
    public async Task ManyStreamsOfOneEntryHoldOneWatchAndAWriteCostsOneLoad()
    {
        await using var web = await WithChangeFeedAsync();
        using var metrics = new MetricsRecorder(web.Services);
        var entries = web.Services.GetRequiredService<LiveEntries>();
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var admins = new List<long>();
        for (var i = 0; i < 20; i++)
        {
            admins.Add(await db.NewUserAsync(site, "admin"));
        }

        // The new accounts change admin-overview's numbers too: let their changes pass before anything is watched (the
        // feed delivers in commit order, so they are through once a probe published after them is).
        await ChangeFeedTests.WaitUntilListeningAsync(web, db.DataSource);
        var streams = new List<EventStream>();
        foreach (var admin in admins)
        {
            var live = await EventStream.OpenAsync(web.ClientFor(site, "admin", admin), "/api/dashboards/live?view=admin-overview");
            streams.Add(live);
            Assert.Equal("admin-overview", (await live.NextEventAsync()).Name);
        }

        Assert.Equal(1, entries.EntryCount);
        var loads = metrics.Total("statscache.loads"); // this host's, and only admin-overview is read
        await db.NewOrderAsync(site, client);
        foreach (var live in streams)
        {
            var update = await live.NextEventAsync(Deadline);
            Assert.Equal(1, update.Json.GetProperty("data").GetProperty("orders_by_status").GetProperty("total").GetInt32());
        }

        Assert.Equal(loads + 1, metrics.Total("statscache.loads"));
        foreach (var live in streams)
        {
            await live.DisposeAsync();
        }

        await WaitUntilAsync(() => entries.StreamCount == 0 && entries.EntryCount == 0, "every stream and its entry released");
    }

    [Fact]
    public async Task AWatchIsRenewedOncePerHalfWatchHoweverManyStreamsAndKeepsThemCurrent()
    {
        var web = StatsCacheFactory.Started([("StatsCache:Changes:IsEnabled", "true"), ("StatsCache:NearCache:WatchDuration", "00:00:02")]);
        await using var _ = web;
        await ChangeFeedTests.WaitUntilListeningAsync(web, db.DataSource);
        using var metrics = new MetricsRecorder(web.Services);
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        var streams = new List<EventStream>();
        for (var i = 0; i < 5; i++)
        {
            var live = await EventStream.OpenAsync(web.ClientFor(site, "client", client), "/api/dashboards/live?view=client-stats");
            Assert.Equal(0, TotalOrders(await live.NextEventAsync()));
            streams.Add(live);
        }

        // Three watches long: renewed about once a second (half of 2 s), not once per stream nor on every upkeep tick.
        var readsBefore = metrics.Total("statscache.reads");
        await Task.Delay(TimeSpan.FromSeconds(6));
        var renewals = metrics.Total("statscache.reads") - readsBefore;
        output.WriteLine($"{renewals} grain reads in 6 s for 5 streams of one entry");
        Assert.InRange(renewals, 4, 8);

        // The watch held all along: a write still reaches every stream.
        await db.NewOrderAsync(site, client);
        foreach (var live in streams)
        {
            Assert.Equal(1, TotalOrders(await live.NextEventAsync(Deadline)));
            await live.DisposeAsync();
        }
    }

    [Fact]
    public async Task AQuietStreamGetsHeartbeats()
    {
        await using var web = StatsCacheFactory.Started([("StatsCache:Live:HeartbeatInterval", "00:00:01")]);
        var site = await db.NewWebsiteAsync();
        await using var live = await EventStream.OpenAsync(web.ClientFor(site, "client", await db.NewUserAsync(site, "client")), "/api/dashboards/live?view=client-stats");
        Assert.Equal("client-stats", (await live.NextEventAsync()).Name);

        var beats = Stopwatch.StartNew();
        Assert.Equal("heartbeat", (await live.NextAsync())!.Comment);
        Assert.Equal("heartbeat", (await live.NextAsync())!.Comment);
        Assert.InRange(beats.Elapsed, TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task AStreamEndsWithAnExpiredEventWhenItsTokenExpires()
    {
        await using var web = StatsCacheFactory.Started([]);
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"), lifetime: TimeSpan.FromSeconds(2));
        await using var live = await EventStream.OpenAsync(http, "/api/dashboards/live?view=client-stats");
        Assert.Equal("client-stats", (await live.NextEventAsync()).Name);

        var expired = await live.NextEventAsync(Deadline);
        Assert.Equal("expired", expired.Name);
        Assert.Equal(401, expired.Json.GetProperty("status").GetInt32());
        Assert.Null(await live.NextAsync());
        await WaitUntilAsync(() => web.Services.GetRequiredService<LiveEntries>().StreamCount == 0, "the expired stream released");
    }

    [Fact]
    public async Task ACallerHoldsAtMostItsCapOfStreamsAndAClosedOneIsFreed()
    {
        await using var web = StatsCacheFactory.Started([("StatsCache:Live:MaxStreamsPerCaller", "2")]);
        var entries = web.Services.GetRequiredService<LiveEntries>();
        var site = await db.NewWebsiteAsync();
        var http = web.ClientFor(site, "client", await db.NewUserAsync(site, "client"));
        var first = await EventStream.OpenAsync(http, "/api/dashboards/live?view=client-stats");
        await using var second = await EventStream.OpenAsync(http, "/api/dashboards/live?view=client-loyalty");
        await first.NextEventAsync();
        await second.NextEventAsync();

        using (var third = await http.GetAsync("/api/dashboards/live?view=client-stats", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
            Assert.Equal("application/problem+json", third.Content.Headers.ContentType?.MediaType);
            Assert.NotNull(third.Headers.RetryAfter);
        }

        // Another caller is not affected by this one's cap.
        await using var other = await EventStream.OpenAsync(web.ClientFor(site, "client", await db.NewUserAsync(site, "client")), "/api/dashboards/live?view=client-stats");
        Assert.Equal("client-stats", (await other.NextEventAsync()).Name);

        // The client goes away: its stream is freed (counted by the web host), and the caller may open another.
        Assert.Equal(3, entries.StreamCount);
        await first.DisposeAsync();
        await WaitUntilAsync(() => entries.StreamCount == 2, "the closed stream released");
        await using var again = await EventStream.OpenAsync(http, "/api/dashboards/live?view=client-stats");
        Assert.Equal("client-stats", (await again.NextEventAsync()).Name);
    }

    [Fact]
    public async Task AWebHostHoldsAtMostItsCapOfStreamsAndEndsThemWhenItStops()
    {
        var web = StatsCacheFactory.Started([("StatsCache:Live:MaxStreams", "1")]);
        var site = await db.NewWebsiteAsync();
        await using var live = await EventStream.OpenAsync(web.ClientFor(site, "client", await db.NewUserAsync(site, "client")), "/api/dashboards/live?view=client-stats");
        Assert.Equal("client-stats", (await live.NextEventAsync()).Name);

        using (var another = await web.ClientFor(site, "client", await db.NewUserAsync(site, "client"))
            .GetAsync("/api/dashboards/live?view=client-stats", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, another.StatusCode);
            Assert.Equal("application/problem+json", another.Content.Headers.ContentType?.MediaType);
            Assert.NotNull(another.Headers.RetryAfter);
        }

        // Stopping: the open stream ends (its reader sees the end), without an 'expired' event.
        var stopping = web.DisposeAsync().AsTask();
        var next = await live.NextAsync(Deadline);
        Assert.True(next is null || next.Comment is not null, $"Expected the end of the stream, got '{next?.Name}'.");
        await stopping;
    }

    [Fact]
    public async Task StreamsOfDifferentCallersCarryOnlyTheirOwnNumbers()
    {
        await using var web = await WithChangeFeedAsync();
        var site = await db.NewWebsiteAsync();
        var alice = await db.NewUserAsync(site, "client");
        var bob = await db.NewUserAsync(site, "client");
        await db.NewOrderAsync(site, bob);
        await using var aliceLive = await EventStream.OpenAsync(web.ClientFor(site, "client", alice), "/api/dashboards/live?view=client-stats");
        await using var bobLive = await EventStream.OpenAsync(web.ClientFor(site, "client", bob), "/api/dashboards/live?view=client-stats");
        Assert.Equal(0, TotalOrders(await aliceLive.NextEventAsync()));
        Assert.Equal(1, TotalOrders(await bobLive.NextEventAsync()));

        await db.NewOrderAsync(site, alice);
        Assert.Equal(1, TotalOrders(await aliceLive.NextEventAsync(Deadline)));

        // Bob's numbers did not change: his stream gets nothing but (with the default 15 s) no heartbeat yet either.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => bobLive.NextAsync(TimeSpan.FromSeconds(1)));
    }

    private static int TotalOrders(ServerEvent e) => e.Json.GetProperty("data").GetProperty("summary").GetProperty("total_orders").GetInt32();

    private async Task<StatsCacheFactory> WithChangeFeedAsync()
    {
        var web = StatsCacheFactory.Started([("StatsCache:Changes:IsEnabled", "true")]);
        await ChangeFeedTests.WaitUntilListeningAsync(web, db.DataSource);
        return web;
    }

    private static Task WaitUntilAsync(Func<bool> condition, string what) => WaitUntilAsync(() => Task.FromResult(condition()), what);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var started = Stopwatch.StartNew();
        using var poll = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
        while (!await condition())
        {
            Assert.True(started.Elapsed < Deadline, $"Waited {Deadline.TotalSeconds} s for {what}.");
            await poll.WaitForNextTickAsync();
        }
    }
}
