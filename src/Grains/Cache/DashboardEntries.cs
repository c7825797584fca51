using System.Buffers.Text;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using StatsCache.Catalog;
using StatsCache.Source;

namespace StatsCache.Cache;

/// <summary>
/// The cached entries of one grain: one per (view, canonical parameters). Runs on the grain's
/// scheduler, so no locks: state changes only between awaits. The grain must be reentrant, so
/// that reads interleave with loads and concurrent readers of a cold entry await the same load.
/// Snapshots are written to grain storage when their content changes, and restored on activation.
/// </summary>
internal sealed partial class DashboardEntries(
    IGrainBase grain,
    IPersistentState<DashboardSnapshots> store,
    DashboardCatalog catalog,
    IDashboardSource source,
    DashboardScope scope,
    DashboardCacheOptions options,
    DashboardMetrics metrics,
    WatcherHeartbeats heartbeats,
    TimeProvider time,
    ILogger logger)
{
    private static readonly DashboardResult Refused = new(null, Stale: false, TimeSpan.Zero, Refused: true);

    // A watch's length is the web host's to choose, up to this.
    private static readonly TimeSpan MaxWatch = TimeSpan.FromMinutes(5);

    private readonly Dictionary<(string View, string Parameters), Entry> _entries = [];
    private readonly CancellationTokenSource _lifetime = new();
    private readonly SemaphoreSlim _firstLoadSlots = new(options.MaxConcurrentFirstLoadsPerGrain);
    private Task _writing = Task.CompletedTask;
    private bool _dirty;

    /// <summary>
    /// Brings back the stored snapshots, each served marked stale until its reload, which comes within a second: changes
    /// made while the grain was inactive were announced to nobody, so a stored snapshot may miss any of them.
    /// </summary>
    public void Restore()
    {
        var now = time.GetUtcNow();
        foreach (var (key, snapshot) in store.State.Entries)
        {
            // The catalog may have changed since the snapshot was stored: what it no longer declares is dropped.
            var at = key.IndexOf('?', StringComparison.Ordinal);
            if (at < 0 || catalog.Find(key[..at]) is not { } view || !view.AllowsRole(scope.Role)
                || !view.TryBindKey(key[(at + 1)..], out var bound, out _) || bound.Key != key[(at + 1)..])
            {
                continue;
            }

            // Too old to serve even stale (see Read): restored, it would answer "unavailable" until its reload came,
            // where a first read of a new entry loads at once.
            if (now - snapshot.AsOf > options.MaxStaleDuration)
            {
                continue;
            }

            // Answer from the stored snapshot at once, marked stale, and reload it soon (within a second, spread).
            var entry = Add(view, bound.Key);
            entry.Snapshot = snapshot;
            entry.Restored = true;
            Schedule(entry, TimeSpan.FromSeconds(Random.Shared.NextDouble()));
        }
    }

    /// <summary>
    /// The data behind these views (all, when empty) changed, up to WAL position <paramref name="lsn"/> (0: unknown): reload their
    /// entries after the debounce delay, or once more after the reload in flight. Never two loads at once.
    /// </summary>
    public void Invalidate(IReadOnlyCollection<string> views, ulong lsn)
    {
        var due = time.GetUtcNow() + options.ChangeDebounceDuration;
        foreach (var entry in _entries.Values)
        {
            if (views.Count > 0 && !views.Contains(entry.View.Name))
            {
                continue;
            }

            entry.OffSchedule = true;
            if (lsn == 0)
            {
                entry.NeedsCurrent = true; // a change whose commit position is unknown (a notice, the invalidation API)
            }

            entry.ChangeLsn = Math.Max(entry.ChangeLsn, lsn);
            if (entry.InFlight is not null)
            {
                entry.ChangedDuringLoad = true;
            }
            else if (entry.NextRefreshAt > due)
            {
                Schedule(entry, options.ChangeDebounceDuration);
            }
        }
    }

    /// <summary>Stops every timer and load, and lets a storage write in progress finish.</summary>
    public async Task DeactivateAsync()
    {
        _lifetime.Cancel();
        foreach (var entry in _entries.Values)
        {
            entry.Timer.Dispose();
            Push(entry, removed: true); // the next read activates the grain again, without the watchers
        }

        metrics.EntriesReleased(_entries.Count);
        _entries.Clear();
        await _writing;
        _lifetime.Dispose();
    }

    /// <summary>
    /// Reads an entry, adding it (which starts its load) only when <paramref name="mayAddEntry"/>: otherwise a read
    /// of an entry not cached is refused. A forced refresh joins the load in flight, or starts one unless the last
    /// load ended within <see cref="DashboardCacheOptions.MinRefreshInterval"/>: then it is an ordinary read.
    /// </summary>
    public ValueTask<DashboardResult> GetAsync(ViewDefinition view, DashboardRequest request, bool mayAddEntry, CancellationToken cancellationToken)
    {
        var added = false;
        if (!_entries.TryGetValue((view.Name, request.Parameters), out var entry))
        {
            if (!mayAddEntry)
            {
                return new ValueTask<DashboardResult>(Refused);
            }

            entry = Add(view, request.Parameters);
            added = true;
        }

        var now = time.GetUtcNow();
        entry.LastReadAt = now;
        if (request.Watcher is { } watcher)
        {
            Watch(entry, watcher, now + (request.WatchFor < MaxWatch ? request.WatchFor : MaxWatch));
        }

        // An entry with nothing usable loads (or joins the load in flight) unless a failed load is
        // backing off: then readers get 503 at once instead of turning an outage into a query per request.
        var result = Read(entry, now);
        if ((request.Refresh && RefreshLoads(entry, now)) || (result.Snapshot is null && (entry.InFlight is not null || now >= entry.NextRefreshAt)))
        {
            return LoadThenReadAsync(entry, request, added, cancellationToken);
        }

        metrics.Read(view.Name, result.Snapshot is null ? ReadOutcome.Unavailable : ReadOutcome.Hit, result.Stale);
        return new ValueTask<DashboardResult>(AnswerTo(request, result, added));
    }

    // What only the reader gets: whether it added the entry, and for a watching read the silo whose heartbeats vouch for the pushes.
    private DashboardResult AnswerTo(DashboardRequest request, DashboardResult result, bool added) =>
        added || request.Watcher is not null
            ? result with { AddedEntry = added, Silo = request.Watcher is null ? null : heartbeats.Silo }
            : result;

    private bool RefreshLoads(Entry entry, DateTimeOffset now)
    {
        var outcome = entry.InFlight is not null ? RefreshOutcome.Joined
            : now - entry.LoadEndedAt >= options.MinRefreshInterval ? RefreshOutcome.Loaded
            : RefreshOutcome.Floor;
        metrics.Refresh(entry.View.Name, outcome);
        if (outcome == RefreshOutcome.Loaded)
        {
            entry.NeedsCurrent = true; // the caller asked for the newest numbers
        }

        return outcome != RefreshOutcome.Floor;
    }

    private async ValueTask<DashboardResult> LoadThenReadAsync(Entry entry, DashboardRequest request, bool added, CancellationToken cancellationToken)
    {
        var outcome = entry.InFlight is null ? ReadOutcome.Loaded : ReadOutcome.Joined;
        if (outcome == ReadOutcome.Joined)
        {
            metrics.Joined(entry.View.Name);
        }

        await LoadAsync(entry).WaitAsync(cancellationToken);
        var result = Read(entry, time.GetUtcNow());
        metrics.Read(entry.View.Name, result.Snapshot is null ? ReadOutcome.Unavailable : outcome, result.Stale);
        return AnswerTo(request, result, added);
    }

    private Entry Add(ViewDefinition view, string parameters)
    {
        // Callers send the canonical key (BoundParameters.Key), so equal requests always find one entry.
        if (!view.TryBindKey(parameters, out var bound, out var error) || bound.Key != parameters)
        {
            throw new ArgumentException(
                error.Length > 0 ? error : $"'{parameters}' is not the canonical form '{bound.Key}'.", nameof(parameters));
        }

        if (_entries.Count >= options.MaxEntriesPerGrain)
        {
            Remove(_entries.Values.MinBy(e => e.LastReadAt)!, "capacity");
        }

        var entry = new Entry(view, bound, time.GetUtcNow());
        // Interleave: a refresh must not block reads, which keep getting the current snapshot.
        // KeepAlive off: refreshing is not a reason to stay active; reads are (idle grains deactivate).
        entry.Timer = grain.RegisterGrainTimer(
            (e, _) => OnTimerAsync(e),
            entry,
            new GrainTimerCreationOptions(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan) { Interleave = true, KeepAlive = false });
        _entries.Add((view.Name, bound.Key), entry);
        metrics.EntryAdded();
        return entry;
    }

    private Task OnTimerAsync(Entry entry)
    {
        if (entry.Removed)
        {
            return Task.CompletedTask;
        }

        var now = time.GetUtcNow();
        if (now - entry.LastReadAt >= entry.View.Ttl * options.IdleTtlMultiple && !IsWatched(entry, now))
        {
            LogEntryIdle(logger, entry.View.Name, scope.SiteId, scope.Role, scope.UserId);
            Remove(entry, "idle");
            return Task.CompletedTask;
        }

        return LoadAsync(entry);
    }

    /// <summary>Starts a load, or joins the one in flight: one entry never has two loads at once.</summary>
    private Task LoadAsync(Entry entry)
    {
        if (entry.InFlight is { } running)
        {
            return running;
        }

        var load = RunLoadAsync(entry, ++entry.StartedGeneration);
        if (!load.IsCompleted)
        {
            entry.InFlight = load;
        }

        return load;
    }

    /// <summary>
    /// Runs a load. An entry's first load waits for one of the grain's
    /// <see cref="DashboardCacheOptions.MaxConcurrentFirstLoadsPerGrain"/> slots: a burst of new entries (one caller
    /// cycling a parameter, an admin opening every view) reaches PostgreSQL a few queries at a time. Refreshes and
    /// retries never wait there: one load hanging on a database that is coming back must not hold up the grain's
    /// other entries (the soak's recovery stalled when they shared the slots). Readers join a load while it waits.
    /// </summary>
    private async Task RunLoadAsync(Entry entry, long generation)
    {
        if (entry.Snapshot is not null || entry.Failures > 0)
        {
            await LoadNowAsync(entry, generation);
            return;
        }

        try
        {
            await _firstLoadSlots.WaitAsync(_lifetime.Token);
        }
        catch (OperationCanceledException)
        {
            entry.InFlight = null; // the grain is deactivating
            return;
        }

        try
        {
            await LoadNowAsync(entry, generation);
        }
        finally
        {
            _firstLoadSlots.Release();
        }
    }

    private async Task LoadNowAsync(Entry entry, long generation)
    {
        var startedAt = time.GetUtcNow();
        var started = time.GetTimestamp();
        entry.ChangedDuringLoad = false; // this load's fence covers every change announced before it started
        var includesLsn = entry.ChangeLsn;
        var fence = FenceOf(entry);
        entry.NeedsCurrent = false;
        var offSchedule = entry.OffSchedule;
        entry.OffSchedule = false;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token);
        timeout.CancelAfter(options.LoadTimeout);
        try
        {
            var loaded = await source.LoadAsync(entry.View, scope, entry.Parameters, fence, timeout.Token).WaitAsync(timeout.Token);

            // A load that started before the one already applied must not overwrite its newer numbers.
            if (generation > entry.AppliedGeneration)
            {
                entry.AppliedGeneration = generation;
                var previous = entry.Snapshot;
                entry.Snapshot = NewSnapshot(previous, loaded.Data, startedAt, Math.Max(Math.Max(includesLsn, loaded.Lsn), previous?.Lsn ?? 0));
                entry.Failures = 0;
                entry.Restored = false;
                if (entry.Snapshot.ContentHash != previous?.ContentHash)
                {
                    RequestWrite();
                }
            }

            metrics.Load(entry.View.Name, succeeded: true, time.GetElapsedTime(started));
            Schedule(entry, entry.ChangedDuringLoad ? options.ChangeDebounceDuration : RefreshDelay(entry.View.Ttl, offSchedule));
        }
        catch (OperationCanceledException) when (_lifetime.IsCancellationRequested)
        {
            // The grain is deactivating; nothing to refresh any more.
        }
        catch (Exception e)
        {
            metrics.Load(entry.View.Name, succeeded: false, time.GetElapsedTime(started), DashboardMetrics.ErrorTypeOf(e));
            entry.Failures++;
            entry.OffSchedule = true; // the retries of many entries end together when the source is back
            entry.NeedsCurrent |= fence.Reason == LoadReason.Current; // the retry owes the reader the same
            var retryIn = RetryDelay(entry.Failures);
            LogLoadFailed(logger, e, entry.View.Name, scope.SiteId, scope.Role, scope.UserId, entry.Failures, retryIn);
            Schedule(entry, retryIn);
        }
        finally
        {
            entry.InFlight = null;
            entry.LoadEndedAt = time.GetUtcNow();
        }
    }

    /// <summary>
    /// How fresh a load's data must be (where it may run, with read replicas): as new as the primary's when a read or a change
    /// of unknown position asked for it; as new as the changes announced; else, for a TTL refresh, a bounded lag. Never older
    /// than the snapshot it replaces.
    /// </summary>
    private static LoadFence FenceOf(Entry entry)
    {
        var held = entry.Snapshot?.Lsn ?? 0;
        return entry.NeedsCurrent ? LoadFence.Current(Math.Max(entry.ChangeLsn, held))
            : entry.ChangeLsn > held ? new LoadFence(LoadReason.Change, entry.ChangeLsn)
            : new LoadFence(LoadReason.Refresh, held);
    }

    // One write at a time (the grain is reentrant); changes made meanwhile go into the next one.
    private void RequestWrite()
    {
        _dirty = true;
        if (_writing.IsCompleted)
        {
            _writing = WriteAsync();
        }
    }

    private async Task WriteAsync()
    {
        while (_dirty && !_lifetime.IsCancellationRequested)
        {
            _dirty = false;
            store.State.Entries = _entries.Values
                .Where(e => e.Snapshot is not null)
                .ToDictionary(e => $"{e.View.Name}?{e.Parameters.Key}", e => e.Snapshot!);
            try
            {
                await store.WriteStateAsync();
            }
            catch (Exception e)
            {
                // Memory keeps serving; the next content change writes again.
                LogWriteFailed(logger, e, scope.SiteId, scope.Role, scope.UserId);
                return;
            }
        }
    }

    private DashboardResult Read(Entry entry, DateTimeOffset now)
    {
        var nextRefreshIn = entry.NextRefreshAt > now ? entry.NextRefreshAt - now : TimeSpan.Zero;
        if (entry.Snapshot is not { } snapshot)
        {
            return new DashboardResult(null, Stale: true, nextRefreshIn, Version: entry.Version);
        }

        var age = now - snapshot.AsOf;
        var stale = entry.Restored || entry.Failures > 0 || age > entry.View.Ttl;
        return stale && age > options.MaxStaleDuration
            ? new DashboardResult(null, Stale: true, nextRefreshIn, Version: entry.Version)
            : new DashboardResult(snapshot, stale, nextRefreshIn, Version: entry.Version);
    }

    private void Schedule(Entry entry, TimeSpan delay)
    {
        if (entry.Removed)
        {
            return;
        }

        entry.NextRefreshAt = time.GetUtcNow() + delay;
        entry.Timer.Change(delay, Timeout.InfiniteTimeSpan);

        // Every change of what a reader gets comes with a new schedule: a load's new snapshot or asOf, a failure's
        // stale flag and retry, a change moving the refresh closer.
        Push(entry, removed: false);
    }

    // A watch lasts until the latest end any of the web host's reads asked for (its near-cache and its live streams share
    // one watcher); the silo's heartbeats to the watcher last as long.
    private void Watch(Entry entry, IDashboardWatcher watcher, DateTimeOffset until)
    {
        entry.Watchers ??= [];
        if (!entry.Watchers.TryGetValue(watcher, out var held) || held < until)
        {
            entry.Watchers[watcher] = until;
            heartbeats.Watching(watcher, until);
        }
    }

    // A watched entry is read, from a web host's memory: the watch ends within minutes of the last read that renewed it.
    private static bool IsWatched(Entry entry, DateTimeOffset now) =>
        entry.Watchers is { } watchers && watchers.Values.Any(until => until > now);

    /// <summary>
    /// Tells the entry's watchers what a read would now get (or that the entry is gone), under a new version.
    /// One-way calls, fanned out: a web host that is slow or gone holds up nothing here. None once the silo is stopping
    /// (see <see cref="WatcherHeartbeats.IsSiloStopping"/>).
    /// </summary>
    private void Push(Entry entry, bool removed)
    {
        var now = time.GetUtcNow();
        entry.Version = Math.Max(entry.Version + 1, now.UtcTicks);
        if (entry.Watchers is not { Count: > 0 } watchers || heartbeats.IsSiloStopping)
        {
            return;
        }

        var result = removed ? null : Read(entry, now);
        var change = new DashboardChange(scope, entry.View.Name, entry.Parameters.Key, result, entry.Version);
        foreach (var (watcher, until) in watchers)
        {
            if (until <= now)
            {
                watchers.Remove(watcher); // a watch nobody renewed (allowed while enumerating a Dictionary since .NET Core 3.0)
                continue;
            }

            _ = watcher.OnChangedAsync(change);
        }
    }

    private void Remove(Entry entry, string reason)
    {
        entry.Removed = true;
        entry.Timer.Dispose();
        Push(entry, removed: true);
        _entries.Remove((entry.View.Name, entry.Parameters.Key));
        metrics.EntryRemoved(entry.View.Name, reason);
    }

    /// <summary>
    /// When to refresh after a load: after a regular refresh, up to
    /// <see cref="DashboardCacheOptions.RefreshJitter"/> of the TTL early, so data is never older than the
    /// TTL. After an off-schedule load (an entry's first, a retry, a reload for a change), at a random
    /// point of the TTL's last <see cref="OffScheduleSpread"/> instead: such loads come in herds (a
    /// morning's logins, a restart, the end of a database outage, the change feed's refresh-all after a
    /// reconnect), and a herd would otherwise come back every TTL, since a small jitter takes many TTLs
    /// to spread it; a herd of refreshes slower than the jitter's margin also serves data older than the
    /// TTL, marked stale. The price is one early load after each off-schedule one, on average 0.55 TTL after it.
    /// </summary>
    private TimeSpan RefreshDelay(TimeSpan ttl, bool offSchedule) =>
        ttl * (1 - (Random.Shared.NextDouble() * (offSchedule ? OffScheduleSpread : options.RefreshJitter)));

    // Spreading over the whole TTL would flatten a wave completely; 90% leaves about a tenth of it
    // (the first harmonic of a wave one TTL long, times sin(0.9π)/0.9π), and never refreshes an
    // entry within a tenth of a TTL of the load before.
    private const double OffScheduleSpread = 0.9;

    // Exponential backoff with jitter in the upper half, capped.
    private TimeSpan RetryDelay(int failures)
    {
        var exponential = options.RetryBaseDuration * Math.Pow(2, Math.Min(failures - 1, 20));
        var capped = exponential < options.RetryMaxDuration ? exponential : options.RetryMaxDuration;
        return capped * (0.5 + (Random.Shared.NextDouble() * 0.5));
    }

    private static DashboardSnapshot NewSnapshot(DashboardSnapshot? previous, byte[] data, DateTimeOffset asOf, ulong lsn)
    {
        var hash = Base64Url.EncodeToString(SHA256.HashData(data).AsSpan(0, 16));
        // Same content: keep the bytes already cached (and shared with readers), only asOf and the LSN move.
        return previous?.ContentHash == hash ? previous with { AsOf = asOf, Lsn = lsn } : new DashboardSnapshot(data, asOf, hash, lsn);
    }

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "Loading view {View} for site {SiteId}, role {Role}, user {UserId} failed (attempt {Attempt}); retrying in {RetryIn}")]
    private static partial void LogLoadFailed(
        ILogger logger, Exception exception, string view, long siteId, string role, long? userId, int attempt, TimeSpan retryIn);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Storing the snapshots of site {SiteId}, role {Role}, user {UserId} failed")]
    private static partial void LogWriteFailed(ILogger logger, Exception exception, long siteId, string role, long? userId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Dropped idle entry {View} for site {SiteId}, role {Role}, user {UserId}")]
    private static partial void LogEntryIdle(ILogger logger, string view, long siteId, string role, long? userId);

    private sealed class Entry(ViewDefinition view, BoundParameters parameters, DateTimeOffset createdAt)
    {
        public ViewDefinition View { get; } = view;

        public BoundParameters Parameters { get; } = parameters;

        public IGrainTimer Timer { get; set; } = null!;

        public DashboardSnapshot? Snapshot { get; set; }

        /// <summary>The load in flight, which every reader of a cold entry and every refresh joins.</summary>
        public Task? InFlight { get; set; }

        public long StartedGeneration { get; set; }

        public long AppliedGeneration { get; set; }

        /// <summary>Consecutive failed loads; the snapshot is stale while this is not zero.</summary>
        public int Failures { get; set; }

        /// <summary>The snapshot came from grain storage and no load has succeeded since: it is stale (see <see cref="Restore"/>).</summary>
        public bool Restored { get; set; }

        public DateTimeOffset LastReadAt { get; set; } = createdAt;

        /// <summary>When the timer reloads the entry (a refresh, or a retry after a failure).</summary>
        public DateTimeOffset NextRefreshAt { get; set; } = createdAt;

        /// <summary>Grows with every change of the entry's answer; starts at the clock's ticks, so a new activation's are newer.</summary>
        public long Version { get; set; } = createdAt.UtcTicks;

        /// <summary>The web hosts watching the entry, with the end of each one's lease; null until one watches.</summary>
        public Dictionary<IDashboardWatcher, DateTimeOffset>? Watchers { get; set; }

        /// <summary>When the last load ended, well or not (the floor of forced refreshes counts from it).</summary>
        public DateTimeOffset LoadEndedAt { get; set; } = DateTimeOffset.MinValue;

        public bool Removed { get; set; }

        /// <summary>The highest WAL position of the changes announced to this entry; the next load includes them.</summary>
        public ulong ChangeLsn { get; set; }

        /// <summary>
        /// The next load must include everything committed on the primary before it starts (<see cref="LoadReason.Current"/>):
        /// the entry is new or restored, a caller forced a refresh, or a change of unknown position came.
        /// </summary>
        public bool NeedsCurrent { get; set; } = true;

        /// <summary>A change was announced after the load in flight started: load once more after it.</summary>
        public bool ChangedDuringLoad { get; set; }

        /// <summary>The next load is not a regular refresh (see <see cref="RefreshDelay"/>): the entry is new, failed, or changed.</summary>
        public bool OffSchedule { get; set; } = true;
    }
}
