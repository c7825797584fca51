using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Metadata;
using StatsCache.Source;

namespace StatsCache.Grains.Tests;

[Collection(ClusterCollection.Name)]
public sealed class DashboardGrainTests(ClusterFixture fixture)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly FakeDashboardSource _source = fixture.Source;

    [Fact]
    public async Task ConcurrentColdRequestsRunOneSourceQuery()
    {
        var site = ClusterFixture.NewSite();
        var joinedBefore = fixture.Metrics.Total("statscache.loads.joined", ClusterFixture.Slow);
        var gate = _source.Block(site);

        var reads = Enumerable.Range(0, 500).Select(_ => ReadAsync(site, "client", 7, ClusterFixture.Slow)).ToList();
        await _source.WaitForLoadsAsync(site, 1, Timeout);
        // Every other read has reached the grain and is waiting on the one load in flight.
        await fixture.Metrics.WaitForAsync("statscache.loads.joined", ClusterFixture.Slow, joinedBefore + 499);
        gate.SetResult();
        var results = await Task.WhenAll(reads);

        Assert.Equal(1, _source.Loads(site));
        Assert.All(results, r => Assert.Equal(1, LoadNumber(r)));
        Assert.All(results, r => Assert.False(r.Stale));
    }

    [Fact]
    public async Task TimerReloadReplacesSnapshotWithoutBlockingReads()
    {
        var site = ClusterFixture.NewSite();
        var first = await ReadAsync(site, "client", 1, ClusterFixture.Fast);
        Assert.Equal(1, LoadNumber(first));

        var gate = _source.Block(site);
        await _source.WaitForLoadsAsync(site, 2, Timeout); // the timer's reload has started and is held

        var during = await ReadAsync(site, "client", 1, ClusterFixture.Fast).WaitAsync(Timeout);
        Assert.Equal(1, LoadNumber(during));
        Assert.Equal(first.Snapshot!.ContentHash, during.Snapshot!.ContentHash);

        gate.SetResult();
        var after = await PollAsync(site, "client", 1, ClusterFixture.Fast, r => LoadNumber(r) >= 2);
        Assert.False(after.Stale);
        Assert.True(after.Snapshot!.AsOf > first.Snapshot.AsOf);
        _source.Unblock(site);
    }

    [Fact]
    public async Task FailingReloadKeepsLastSnapshotAndMarksItStale()
    {
        var site = ClusterFixture.NewSite();
        var good = await ReadAsync(site, "client", 1, ClusterFixture.Fast);
        Assert.False(good.Stale);

        _source.Fail(site, true);
        var stale = await PollAsync(site, "client", 1, ClusterFixture.Fast, r => r.Stale);
        Assert.Equal(good.Snapshot!.ContentHash, stale.Snapshot!.ContentHash);
        Assert.Equal(good.Snapshot.AsOf, stale.Snapshot.AsOf);

        // A forced refresh that fails still answers with the last good snapshot.
        var refreshed = await ReadAsync(site, "client", 1, ClusterFixture.Fast, refresh: true);
        Assert.True(refreshed.Stale);
        Assert.Equal(good.Snapshot.ContentHash, refreshed.Snapshot!.ContentHash);

        // Retries with backoff recover by themselves once the source is back.
        _source.Fail(site, false);
        var recovered = await PollAsync(site, "client", 1, ClusterFixture.Fast, r => !r.Stale);
        Assert.True(LoadNumber(recovered) > LoadNumber(good));
    }

    [Fact]
    public async Task SnapshotOlderThanMaxStaleAgeIsNotServed()
    {
        var site = ClusterFixture.NewSite();
        await ReadAsync(site, "client", 1, ClusterFixture.Fast);
        _source.Fail(site, true);

        // The fixture's maximum stale age is 3 s; past it the grain answers "unavailable".
        var gone = await PollAsync(site, "client", 1, ClusterFixture.Fast, r => r.Snapshot is null);
        Assert.True(gone.Stale);
        _source.Fail(site, false);
    }

    [Fact]
    public async Task ColdEntryWhoseLoadFailsIsUnavailableAndBacksOff()
    {
        var site = ClusterFixture.NewSite();
        _source.Fail(site, true);

        var first = await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        Assert.Null(first.Snapshot);
        Assert.True(first.NextRefreshIn > TimeSpan.Zero);

        // While the retry waits, reads answer at once instead of each querying the failing source.
        var loads = _source.Loads(site);
        var again = await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        Assert.Null(again.Snapshot);
        Assert.Equal(loads, _source.Loads(site));

        _source.Fail(site, false);
        var recovered = await PollAsync(site, "client", 1, ClusterFixture.Slow, r => r.Snapshot is not null);
        Assert.False(recovered.Stale);
    }

    [Fact]
    public async Task RefreshDuringLoadJoinsItInsteadOfStartingAnother()
    {
        var site = ClusterFixture.NewSite();
        var joinedBefore = fixture.Metrics.Total("statscache.loads.joined", ClusterFixture.Slow);
        var gate = _source.Block(site);

        var cold = ReadAsync(site, "client", 1, ClusterFixture.Slow);
        await _source.WaitForLoadsAsync(site, 1, Timeout);
        var refresh = ReadAsync(site, "client", 1, ClusterFixture.Slow, refresh: true);
        await fixture.Metrics.WaitForAsync("statscache.loads.joined", ClusterFixture.Slow, joinedBefore + 1);
        gate.SetResult();

        Assert.Equal(1, LoadNumber(await cold));
        Assert.Equal(1, LoadNumber(await refresh));
        Assert.Equal(1, _source.Loads(site));
        _source.Unblock(site);
    }

    [Fact]
    public async Task RefreshWithinTheFloorStartsNoLoadAndAfterItAHundredConcurrentRefreshesRunOne()
    {
        var site = ClusterFixture.NewSite();
        var floorBefore = fixture.Metrics.Total("statscache.refreshes", ClusterFixture.Slow, "floor");
        await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        var sinceLoad = Stopwatch.StartNew();

        var within = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => ReadAsync(site, "client", 1, ClusterFixture.Slow, refresh: true)));
        Assert.True(sinceLoad.Elapsed < ClusterFixture.MinRefreshInterval, "The refreshes took longer than the floor; this test cannot tell.");
        Assert.All(within, r => Assert.Equal(1, LoadNumber(r)));
        Assert.Equal(1, _source.Loads(site));
        Assert.Equal(floorBefore + 100, fixture.Metrics.Total("statscache.refreshes", ClusterFixture.Slow, "floor"));

        // Past the floor, the first refresh starts a load (held here) and the other 99 join it.
        var gate = _source.Block(site);
        var loadsStarted = _source.WaitForLoadsAsync(site, 2, Timeout);
        Task<DashboardResult> first;
        while (true)
        {
            first = ReadAsync(site, "client", 1, ClusterFixture.Slow, refresh: true);
            if (await Task.WhenAny(first, loadsStarted) == loadsStarted)
            {
                break;
            }

            Assert.Equal(1, LoadNumber(await first)); // still within the floor
            Assert.True(sinceLoad.Elapsed < Timeout, "No refresh started a load after the floor.");
            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }

        Assert.True(sinceLoad.Elapsed >= ClusterFixture.MinRefreshInterval);
        var joinedBefore = fixture.Metrics.Total("statscache.refreshes", ClusterFixture.Slow, "joined");
        var others = Enumerable.Range(0, 99).Select(_ => ReadAsync(site, "client", 1, ClusterFixture.Slow, refresh: true)).ToList();
        await fixture.Metrics.WaitForAsync("statscache.refreshes", ClusterFixture.Slow, joinedBefore + 99, "joined");
        gate.SetResult();

        Assert.All(await Task.WhenAll([first, .. others]), r => Assert.Equal(2, LoadNumber(r)));
        Assert.Equal(2, _source.Loads(site));
        _source.Unblock(site);
    }

    [Fact]
    public async Task RefreshFloorOfASiteViewHoldsAcrossItsAdmins()
    {
        var site = ClusterFixture.NewSite();
        await ReadAsync(site, "admin", 1, ClusterFixture.Shared);
        var sinceLoad = Stopwatch.StartNew();

        var others = await Task.WhenAll(Enumerable.Range(2, 50).Select(admin => ReadAsync(site, "admin", admin, ClusterFixture.Shared, refresh: true)));
        Assert.True(sinceLoad.Elapsed < ClusterFixture.MinRefreshInterval, "The refreshes took longer than the floor; this test cannot tell.");
        Assert.All(others, r => Assert.Equal(1, LoadNumber(r)));
        Assert.Equal(1, _source.Loads(site));
    }

    [Fact]
    public async Task CallerPastItsBudgetOfNewEntriesIsRefusedWhileItsCachedEntriesAndOtherCallersAreServed()
    {
        var site = ClusterFixture.NewSite();
        for (var days = 1; days < ClusterFixture.NewEntryBurst; days++)
        {
            Assert.True((await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Days(ClusterFixture.Ranged, days))).AddedEntry);
        }

        // Reads of cached entries take nothing from the budget: the last token is still there after them.
        for (var i = 0; i < 10; i++)
        {
            var cached = await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Days(ClusterFixture.Ranged, ClusterFixture.NewEntryBurst - 1), refresh: i == 0);
            Assert.False(cached.AddedEntry || cached.Refused);
        }

        Assert.NotNull((await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Days(ClusterFixture.Ranged, ClusterFixture.NewEntryBurst))).Snapshot);
        Assert.Equal(ClusterFixture.NewEntryBurst, _source.Loads(site));

        var refused = await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Days(ClusterFixture.Ranged, 100));
        Assert.True(refused.Refused);
        Assert.Null(refused.Snapshot);
        Assert.InRange(refused.NextRefreshIn, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1 / ClusterFixture.NewEntriesPerSecond));
        Assert.Equal(ClusterFixture.NewEntryBurst, _source.Loads(site));

        // Its cached entries still answer, and another user of the site adds the entry it was refused.
        Assert.NotNull((await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Days(ClusterFixture.Ranged, ClusterFixture.NewEntryBurst))).Snapshot);
        Assert.NotNull((await ReadAsync(site, "client", 2, ClusterFixture.Ranged, Days(ClusterFixture.Ranged, 100))).Snapshot);
        Assert.Equal(ClusterFixture.NewEntryBurst + 1, _source.Loads(site));
    }

    [Fact]
    public async Task BudgetOfNewEntriesHoldsForSiteViewsWhoseCachedEntriesAnswerEveryAdmin()
    {
        var site = ClusterFixture.NewSite();
        for (var days = 1; days <= ClusterFixture.NewEntryBurst; days++)
        {
            Assert.NotNull((await ReadAsync(site, "admin", 1, ClusterFixture.SharedRanged, Days(ClusterFixture.SharedRanged, days))).Snapshot);
        }

        Assert.True((await ReadAsync(site, "admin", 1, ClusterFixture.SharedRanged, Days(ClusterFixture.SharedRanged, 100))).Refused);
        Assert.Equal(ClusterFixture.NewEntryBurst, _source.Loads(site));

        // Another admin adds it; then the first admin's read of it is a read of a cached entry, never refused.
        Assert.NotNull((await ReadAsync(site, "admin", 2, ClusterFixture.SharedRanged, Days(ClusterFixture.SharedRanged, 100))).Snapshot);
        var cached = await ReadAsync(site, "admin", 1, ClusterFixture.SharedRanged, Days(ClusterFixture.SharedRanged, 100));
        Assert.False(cached.Refused);
        Assert.NotNull(cached.Snapshot);
        Assert.Equal(ClusterFixture.NewEntryBurst + 1, _source.Loads(site));
    }

    [Fact]
    public async Task OneGrainRunsAtMostTwoFirstLoadsAtOnceAndTheRestWaitTheirTurn()
    {
        var site = ClusterFixture.NewSite();
        var gate = _source.Block(site);
        var burst = Enumerable.Range(1, 4).Select(days => ReadAsync(site, "client", 1, ClusterFixture.Ranged, Days(ClusterFixture.Ranged, days))).ToList();
        await _source.WaitForLoadsAsync(site, 2, Timeout);

        // The positive control: another user's grain starts its load; the first grain's other two still wait.
        var other = ReadAsync(site, "client", 2, ClusterFixture.Slow);
        await _source.WaitForLoadsAsync(site, 3, Timeout);
        Assert.Equal(3, _source.Loads(site));

        gate.SetResult();
        Assert.All(await Task.WhenAll(burst), r => Assert.NotNull(r.Snapshot));
        Assert.NotNull((await other).Snapshot);
        Assert.Equal(5, _source.Loads(site));
        _source.Unblock(site);
    }

    [Fact]
    public async Task IdleEntryStopsRefreshing()
    {
        var site = ClusterFixture.NewSite();
        var evictedBefore = fixture.Metrics.Total("statscache.entries.evicted", ClusterFixture.Idle, "idle");
        await ReadAsync(site, "client", 1, ClusterFixture.Idle);

        // TTL 1 s and an idle limit of 2 TTLs: the entry refreshes at a random point of its first TTL
        // (0.1–1 s), then about every TTL until 2 s after the read (one to three refreshes), then is dropped.
        await fixture.Metrics.WaitForAsync("statscache.entries.evicted", ClusterFixture.Idle, evictedBefore + 1, "idle");
        var loadsWhenDropped = _source.Loads(site);
        Assert.InRange(loadsWhenDropped, 2, 4);

        // Proving that nothing happens takes time: watch three more TTLs.
        await Task.Delay(ClusterFixture.Catalog.Find(ClusterFixture.Idle)!.Ttl * 3);
        Assert.Equal(loadsWhenDropped, _source.Loads(site));

        // A new read loads it again, cold.
        var again = await ReadAsync(site, "client", 1, ClusterFixture.Idle);
        Assert.Equal(loadsWhenDropped + 1, LoadNumber(again));
    }

    [Fact]
    public async Task UsersRolesAndSitesNeverShareAnEntry()
    {
        var siteA = ClusterFixture.NewSite();
        var siteB = ClusterFixture.NewSite();
        var callers = new[] { (siteA, "client", 1L), (siteA, "client", 2L), (siteA, "writer", 1L), (siteB, "client", 1L) };

        foreach (var (site, role, user) in callers)
        {
            var result = await ReadAsync(site, role, user, ClusterFixture.Slow);
            using var data = JsonDocument.Parse(result.Snapshot!.Data);
            Assert.Equal(site, data.RootElement.GetProperty("site").GetInt64());
            Assert.Equal(role, data.RootElement.GetProperty("role").GetString());
            Assert.Equal(user, data.RootElement.GetProperty("user").GetInt64());
        }

        // Each caller cost its own load: nobody was answered from another's entry.
        Assert.Equal(3, _source.Loads(siteA));
        Assert.Equal(1, _source.Loads(siteB));
        Assert.Equal(
            [(siteA, "client", 1L), (siteA, "client", 2L), (siteA, "writer", 1L)],
            _source.Calls(siteA).Select(c => (c.Scope.SiteId, c.Scope.Role, c.Scope.UserId!.Value)));
    }

    [Fact]
    public async Task SiteScopedViewIsLoadedOnceForAllUsersOfTheSite()
    {
        var site = ClusterFixture.NewSite();
        var gate = _source.Block(site);
        var reads = Enumerable.Range(1, 200).Select(user => ReadAsync(site, "admin", user, ClusterFixture.Shared)).ToList();
        await _source.WaitForLoadsAsync(site, 1, Timeout);
        gate.SetResult();
        var results = await Task.WhenAll(reads);

        Assert.Equal(1, _source.Loads(site));
        Assert.All(results, r => Assert.Equal(results[0].Snapshot!.ContentHash, r.Snapshot!.ContentHash));
        Assert.Null(_source.Calls(site).Single().Scope.UserId);
        _source.Unblock(site);
    }

    [Fact]
    public async Task ViewOfAnotherRoleIsRefusedByTheGrain()
    {
        var site = ClusterFixture.NewSite();
        await Assert.ThrowsAsync<UnauthorizedAccessException>(() => ReadAsync(site, "client", 1, ClusterFixture.Shared));
        await Assert.ThrowsAsync<UnauthorizedAccessException>(() => ReadAsync(site, "admin", 1, ClusterFixture.Slow));
        Assert.Equal(0, _source.Loads(site));
    }

    [Fact]
    public async Task EachParameterCombinationIsItsOwnEntryUpToTheCap()
    {
        var site = ClusterFixture.NewSite();
        string Key(int days) => Days(ClusterFixture.Ranged, days);

        await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Key(1));
        await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Key(2));
        await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Key(1));  // hit
        Assert.Equal(2, _source.Loads(site));

        // The cap is 3 entries: a fourth drops the least recently read (days=2).
        await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Key(3));
        await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Key(4));
        await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Key(1));  // still cached
        Assert.Equal(4, _source.Loads(site));
        await ReadAsync(site, "client", 1, ClusterFixture.Ranged, Key(2));  // dropped, loads again
        Assert.Equal(5, _source.Loads(site));
        Assert.Equal(["days=1", "days=2", "days=3", "days=4", "days=2"], _source.Calls(site).Select(c => c.Parameters));
    }

    [Fact]
    public async Task ReactivatedGrainAnswersFromItsStoredSnapshotWithoutWaitingForTheSource()
    {
        var site = ClusterFixture.NewSite();
        var first = await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        await fixture.DeactivateAsync(Grain(site, 1));

        // Any load would now wait forever: the answer can only come from storage.
        _source.Block(site);
        var restored = await ReadAsync(site, "client", 1, ClusterFixture.Slow).WaitAsync(Timeout);

        Assert.Equal(first.Snapshot!.ContentHash, restored.Snapshot!.ContentHash);
        Assert.Equal(first.Snapshot.AsOf, restored.Snapshot.AsOf);
        Assert.Equal(1, _source.Loads(site));
        _source.Unblock(site);
    }

    [Fact]
    public async Task RestoredSnapshotIsStaleUntilItsReloadSucceeds()
    {
        var site = ClusterFixture.NewSite();
        var first = await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        Assert.False(first.Stale);
        await fixture.DeactivateAsync(Grain(site, 1));

        // Younger than its TTL of 5 minutes, but changes made while the grain was inactive reached nobody.
        var gate = _source.Block(site);
        var restored = await ReadAsync(site, "client", 1, ClusterFixture.Slow).WaitAsync(Timeout);
        Assert.Equal(first.Snapshot!.AsOf, restored.Snapshot!.AsOf);
        Assert.Equal(1, LoadNumber(restored));
        Assert.True(restored.Stale);

        // The reload (within a second of the reactivation) is held: the restored snapshot is still what readers get.
        await _source.WaitForLoadsAsync(site, 2, Timeout);
        var waiting = await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        Assert.Equal(first.Snapshot.AsOf, waiting.Snapshot!.AsOf);
        Assert.True(waiting.Stale);

        gate.SetResult();
        var reloaded = await PollAsync(site, "client", 1, ClusterFixture.Slow, r => LoadNumber(r) == 2);
        Assert.False(reloaded.Stale);
        Assert.True(reloaded.Snapshot!.AsOf > first.Snapshot.AsOf);
        _source.Unblock(site);
    }

    [Fact]
    public async Task RestoredSnapshotStaysStaleWhileItsReloadsFail()
    {
        var site = ClusterFixture.NewSite();
        var first = await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        await fixture.DeactivateAsync(Grain(site, 1));

        _source.Fail(site, true);
        var restored = await ReadAsync(site, "client", 1, ClusterFixture.Slow).WaitAsync(Timeout);
        Assert.True(restored.Stale);

        // The reload failed and its retry has started (the fixture retries after 100-200 ms): still the stored snapshot, stale.
        await _source.WaitForLoadsAsync(site, 3, Timeout);
        var failed = await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        Assert.Equal(first.Snapshot!.AsOf, failed.Snapshot!.AsOf);
        Assert.Equal(1, LoadNumber(failed));
        Assert.True(failed.Stale);

        _source.Fail(site, false);
        var recovered = await PollAsync(site, "client", 1, ClusterFixture.Slow, r => !r.Stale);
        Assert.True(LoadNumber(recovered) > 3);
        Assert.True(recovered.Snapshot!.AsOf > first.Snapshot.AsOf);
    }

    [Fact]
    public async Task ReactivatedGrainLoadsAtOnceWhenItsStoredSnapshotIsTooOldToServe()
    {
        var site = ClusterFixture.NewSite();
        var first = await ReadAsync(site, "client", 1, ClusterFixture.Fast);
        await fixture.DeactivateAsync(Grain(site, 1));

        // Past its TTL and the fixture's maximum stale age (3 s) the stored snapshot can never be served: the reactivated
        // grain must load for its first reader instead of answering "unavailable" until its restored entry's refresh.
        await Task.Delay(first.Snapshot!.AsOf + TimeSpan.FromSeconds(3.5) - DateTimeOffset.UtcNow);
        var reloaded = await ReadAsync(site, "client", 1, ClusterFixture.Fast);

        Assert.NotNull(reloaded.Snapshot);
        Assert.True(reloaded.Snapshot.AsOf > first.Snapshot.AsOf);
    }

    [Fact]
    public async Task ReactivatedSiteGrainServesEveryAdminFromStorage()
    {
        var site = ClusterFixture.NewSite();
        var first = await ReadAsync(site, "admin", 1, ClusterFixture.Shared);
        await fixture.DeactivateAsync(fixture.Client.GetGrain<ISiteDashboardGrain>(DashboardScope.SiteKey(site, "admin")));
        _source.Block(site);

        var other = await ReadAsync(site, "admin", 2, ClusterFixture.Shared).WaitAsync(Timeout);
        Assert.Equal(first.Snapshot!.ContentHash, other.Snapshot!.ContentHash);
        Assert.Equal(1, _source.Loads(site));
        _source.Unblock(site);
    }

    [Fact]
    public async Task BurstOfChangesCausesOneReloadAfterTheDebounce()
    {
        var site = ClusterFixture.NewSite();
        await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        var grain = Grain(site, 1);

        for (var i = 0; i < 100; i++)
        {
            await grain.InvalidateAsync([], lsn: 0);
        }

        var reloaded = await PollAsync(site, "client", 1, ClusterFixture.Slow, r => LoadNumber(r) >= 2);
        Assert.Equal(2, LoadNumber(reloaded));
        // One more debounce period passes without a further load: the burst cost exactly one.
        await Task.Delay(ClusterFixture.ChangeDebounce * 4);
        Assert.Equal(2, _source.Loads(site));
    }

    [Fact]
    public async Task ChangeDuringAReloadCausesExactlyOneMoreAfterIt()
    {
        var site = ClusterFixture.NewSite();
        await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        var grain = Grain(site, 1);

        _source.Block(site);
        await grain.InvalidateAsync([], lsn: 0);
        await _source.WaitForLoadsAsync(site, 2, Timeout); // the change's reload is running, held
        await grain.InvalidateAsync([], lsn: 0);                  // changes it may not have seen
        await grain.InvalidateAsync([ClusterFixture.Slow], lsn: 0);
        Assert.Equal(2, _source.Loads(site));           // never a second load at once
        _source.Unblock(site);

        await _source.WaitForLoadsAsync(site, 3, Timeout);
        var last = await PollAsync(site, "client", 1, ClusterFixture.Slow, r => LoadNumber(r) == 3);
        Assert.False(last.Stale);
    }

    [Fact]
    public async Task ChangeToOtherViewsLeavesTheEntryAlone()
    {
        var site = ClusterFixture.NewSite();
        await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        var grain = Grain(site, 1);

        await grain.InvalidateAsync([ClusterFixture.Fast], lsn: 0);
        await grain.InvalidateAsync([ClusterFixture.Slow], lsn: 0); // the positive control, after it
        await _source.WaitForLoadsAsync(site, 2, Timeout);
        Assert.Equal([ClusterFixture.Slow, ClusterFixture.Slow], _source.Calls(site).Select(c => c.View));
    }

    [Fact]
    public async Task AReloadForAChangeRemembersTheChangesLsnAndNeverGoesBack()
    {
        var site = ClusterFixture.NewSite();
        Assert.Equal(0UL, (await ReadAsync(site, "client", 1, ClusterFixture.Slow)).Snapshot!.Lsn); // no change announced yet
        var grain = Grain(site, 1);

        await grain.InvalidateAsync([ClusterFixture.Slow], lsn: 5_000);
        var reloaded = await PollAsync(site, "client", 1, ClusterFixture.Slow, r => LoadNumber(r) == 2);
        Assert.Equal(5_000UL, reloaded.Snapshot!.Lsn);

        // A change announced late with an older position reloads, and the snapshot still includes the newer one.
        await grain.InvalidateAsync([ClusterFixture.Slow], lsn: 4_000);
        var again = await PollAsync(site, "client", 1, ClusterFixture.Slow, r => LoadNumber(r) == 3);
        Assert.Equal(5_000UL, again.Snapshot!.Lsn);
    }

    [Fact]
    public async Task EachLoadAsksForTheFreshnessItsCauseNeedsAndNeverLessThanItsSnapshot()
    {
        var site = ClusterFixture.NewSite();
        var grain = Grain(site, 1);
        _source.AnswerAt(site, 1_000); // the server the loads run on has replayed up to 1,000

        // A first read needs what the primary holds now; the snapshot records what its server had replayed.
        Assert.Equal(1_000UL, (await ReadAsync(site, "client", 1, ClusterFixture.Slow)).Snapshot!.Lsn);

        // A change with a position needs that position.
        _source.AnswerAt(site, 6_000);
        await grain.InvalidateAsync([ClusterFixture.Slow], lsn: 5_000);
        Assert.Equal(6_000UL, (await PollAsync(site, "client", 1, ClusterFixture.Slow, r => LoadNumber(r) == 2)).Snapshot!.Lsn);

        // A change of unknown position (a notice, the invalidation API) needs the primary's, and no less than the snapshot.
        await grain.InvalidateAsync([ClusterFixture.Slow], lsn: 0);
        await PollAsync(site, "client", 1, ClusterFixture.Slow, r => LoadNumber(r) == 3);

        // So does a caller forcing a refresh, once the floor since the last load has passed.
        var deadline = DateTime.UtcNow + Timeout;
        while (LoadNumber(await ReadAsync(site, "client", 1, ClusterFixture.Slow, refresh: true)) < 4)
        {
            Assert.True(DateTime.UtcNow < deadline, "A forced refresh never loaded.");
            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }

        Assert.Equal(
            [LoadFence.Current(0), new LoadFence(LoadReason.Change, 5_000), LoadFence.Current(6_000), LoadFence.Current(6_000)],
            _source.Fences(site));
    }

    [Fact]
    public async Task ATtlRefreshAcceptsALaggingServerButNothingOlderThanItsSnapshot()
    {
        var site = ClusterFixture.NewSite();
        _source.AnswerAt(site, 1_000);
        await ReadAsync(site, "client", 1, ClusterFixture.Fast);
        await _source.WaitForLoadsAsync(site, 2, Timeout); // the TTL (1 s) is up

        Assert.Equal([LoadFence.Current(0), new LoadFence(LoadReason.Refresh, 1_000)], _source.Fences(site).Take(2));
    }

    [Fact]
    public async Task AFailedFirstLoadIsRetriedAsNewAsTheReadAskedFor()
    {
        var site = ClusterFixture.NewSite();
        _source.Fail(site, failing: true);
        await ReadAsync(site, "client", 1, ClusterFixture.Slow);
        _source.Fail(site, failing: false);
        await PollAsync(site, "client", 1, ClusterFixture.Slow, r => r.Snapshot is not null);
        Assert.All(_source.Fences(site), f => Assert.Equal(LoadReason.Current, f.Reason));
    }

    [Fact]
    public async Task EntriesLoadedTogetherOffScheduleRefreshNextAtSpreadPointsOfTheirTtl()
    {
        const int Users = 200;
        var site = ClusterFixture.NewSite();
        var users = Enumerable.Range(1, Users).Select(user => (long)user).ToList();

        // First loads: read together.
        AssertSpread(await Task.WhenAll(users.Select(user => ReadAsync(site, "client", user, ClusterFixture.Slow))));

        // Reloads for a change, announced to every entry at once.
        await Task.WhenAll(users.Select(user => Grain(site, user).InvalidateAsync([ClusterFixture.Slow], lsn: 0)));
        await _source.WaitForLoadsAsync(site, 2 * Users, Timeout);
        AssertSpread(await PollAllAsync(r => LoadNumber(r) > Users));

        // Retries that all succeed when the source is back after an outage.
        _source.Fail(site, true);
        await Task.WhenAll(users.Select(user => Grain(site, user).InvalidateAsync([ClusterFixture.Slow], lsn: 0)));
        await _source.WaitForLoadsAsync(site, 3 * Users, Timeout); // every entry has failed once
        _source.Fail(site, false);
        AssertSpread(await PollAllAsync(r => !r.Stale && LoadNumber(r) > 3 * Users)); // reloaded since the failures

        Task<DashboardResult[]> PollAllAsync(Func<DashboardResult, bool> until) =>
            Task.WhenAll(users.Select(user => PollAsync(site, "client", user, ClusterFixture.Slow, until)));

        // A regular refresh comes at most 10% of the TTL early, so in step if the load before was. After an
        // off-schedule load it comes anywhere in the TTL's last 90%: with 200 entries, the chance of none in
        // its first or last quarter is 0.75^200.
        static void AssertSpread(DashboardResult[] results)
        {
            var ttl = ClusterFixture.Catalog.Find(ClusterFixture.Slow)!.Ttl;
            var next = results.Select(r => r.NextRefreshIn).ToList();
            Assert.All(next, n => Assert.InRange(n, ttl * 0.1 - TimeSpan.FromSeconds(5), ttl));
            Assert.Contains(next, n => n < ttl * 0.325);
            Assert.Contains(next, n => n > ttl * 0.775);
        }
    }

    [Fact]
    public async Task DashboardGrainsReferencesReachTheActivationsOrleansOwnReferencesReach()
    {
        var site = ClusterFixture.NewSite();
        var grains = new DashboardGrains(fixture.Client, fixture.Client.ServiceProvider.GetRequiredService<GrainInterfaceTypeResolver>());
        var user = grains.User(site, "client", 1);
        var orleansUser = Grain(site, 1);
        Assert.Equal(orleansUser.GetGrainId(), user.GetGrainId());
        Assert.Equal(
            fixture.Client.GetGrain<ISiteDashboardGrain>(DashboardScope.SiteKey(site, "admin")).GetGrainId(),
            grains.Site(site, "admin").GetGrainId());

        // The same activation, hence the same entry: the second read is a hit on the first one's load.
        var request = new DashboardRequest(ClusterFixture.Slow, "");
        var first = await orleansUser.GetAsync(request);
        var second = await user.GetAsync(request);
        Assert.Equal(1, _source.Loads(site));
        Assert.Equal(first.Snapshot!.AsOf, second.Snapshot!.AsOf);
    }

    private static string Days(string view, int days) =>
        ClusterFixture.Catalog.Find(view)!.TryBind(new Dictionary<string, string> { ["days"] = $"{days}" }, out var bound, out var error)
            ? bound.Key
            : throw new InvalidOperationException(error);

    private IUserDashboardGrain Grain(long site, long user) =>
        fixture.Client.GetGrain<IUserDashboardGrain>(DashboardScope.UserKey(site, "client", user));

    private Task<DashboardResult> ReadAsync(long site, string role, long user, string view, string? parameters = null, bool refresh = false)
    {
        parameters ??= ClusterFixture.Catalog.Find(view)!.DefaultParameters.Key;
        return fixture.Client.GetGrain<IUserDashboardGrain>(DashboardScope.UserKey(site, role, user))
            .GetAsync(new DashboardRequest(view, parameters, refresh)).AsTask();
    }

    private async Task<DashboardResult> PollAsync(long site, string role, long user, string view, Func<DashboardResult, bool> until)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var result = await ReadAsync(site, role, user, view);
            if (until(result))
            {
                return result;
            }

            Assert.True(DateTime.UtcNow < deadline, $"The grain never answered as expected; last answer: {result}.");
            await Task.Delay(TimeSpan.FromMilliseconds(20));
        }
    }

    private static int LoadNumber(DashboardResult result)
    {
        using var data = JsonDocument.Parse(result.Snapshot!.Data);
        return data.RootElement.GetProperty("load").GetInt32();
    }
}
