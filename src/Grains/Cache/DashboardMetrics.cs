using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace StatsCache.Cache;

/// <summary>The <c>StatsCache</c> meter: what the dashboard grains do, tagged by view (never by user or site).</summary>
public sealed class DashboardMetrics
{
    public const string MeterName = "StatsCache";

    // Seconds, from a cached-plan query to a load near its timeout (the default buckets are for milliseconds).
    private static readonly double[] LoadDurationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private readonly Counter<long> _reads;
    private readonly Counter<long> _hits;
    private readonly Counter<long> _joined;
    private readonly Counter<long> _stale;
    private readonly Counter<long> _unavailable;
    private readonly Counter<long> _loads;
    private readonly Histogram<double> _loadDuration;
    private readonly UpDownCounter<long> _entries;
    private readonly Counter<long> _evicted;
    private readonly Counter<long> _changes;
    private readonly Counter<long> _invalidations;
    private readonly Counter<long> _feedConnects;
    private readonly Counter<long> _refreshes;

    public DashboardMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _reads = meter.CreateCounter<long>("statscache.reads", "{read}", "Reads of a view that reached a grain.");
        _hits = meter.CreateCounter<long>("statscache.hits", "{read}", "Reads answered from memory without waiting for a load.");
        _joined = meter.CreateCounter<long>("statscache.loads.joined", "{read}", "Reads that waited on a load another read or the timer had started.");
        _stale = meter.CreateCounter<long>("statscache.stale_serves", "{read}", "Reads answered with a stale snapshot.");
        _unavailable = meter.CreateCounter<long>("statscache.unavailable", "{read}", "Reads with no usable snapshot (HTTP 503).");
        _loads = meter.CreateCounter<long>("statscache.loads", "{load}", "Loads run against the source, by outcome.");
        _loadDuration = meter.CreateHistogram<double>(
            "statscache.load.duration",
            "s",
            "Duration of loads against the source.",
            tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = LoadDurationBuckets });
        _entries = meter.CreateUpDownCounter<long>("statscache.entries", "{entry}", "Entries held by active grains.");
        _evicted = meter.CreateCounter<long>("statscache.entries.evicted", "{entry}", "Entries dropped, by reason (idle or capacity).");
        _changes = meter.CreateCounter<long>(
            "statscache.changes", "{notice}", "Changes this silo routed to its grains, coalesced per table and site, by table (api: the invalidation API; all: a refresh of every entry).");
        _invalidations = meter.CreateCounter<long>("statscache.changes.invalidations", "{call}", "Grains told that data they hold changed.");
        _refreshes = meter.CreateCounter<long>(
            "statscache.refreshes", "{read}", "Forced refreshes (refresh=true), by outcome: loaded, joined a load in flight, or answered from the floor.");
        _feedConnects = meter.CreateCounter<long>("statscache.changes.connects", "{connection}", "Times the change feed's listener connected (first, or again after losing the connection).");
    }

    public void Read(string view, ReadOutcome outcome, bool stale)
    {
        var tag = new KeyValuePair<string, object?>("view", view);
        _reads.Add(1, tag);
        switch (outcome)
        {
            case ReadOutcome.Hit: _hits.Add(1, tag); break;
            case ReadOutcome.Unavailable: _unavailable.Add(1, tag); break;
        }

        if (stale && outcome != ReadOutcome.Unavailable)
        {
            _stale.Add(1, tag);
        }
    }

    /// <summary>Counted when the read starts waiting, so the count shows requests collapsed into a load in flight.</summary>
    public void Joined(string view) => _joined.Add(1, new KeyValuePair<string, object?>("view", view));

    public void Refresh(string view, RefreshOutcome outcome) => _refreshes.Add(1, new TagList
    {
        { "view", view },
        { "outcome", outcome switch { RefreshOutcome.Loaded => "loaded", RefreshOutcome.Joined => "joined", _ => "floor" } },
    });

    /// <summary>A load ended; a failed one is tagged <c>error.type</c> with <see cref="ErrorTypeOf"/> of its error.</summary>
    public void Load(string view, bool succeeded, TimeSpan duration, string? errorType = null)
    {
        var tags = new TagList { { "view", view }, { "outcome", succeeded ? "success" : "failure" } };
        if (!succeeded)
        {
            tags.Add("error.type", errorType ?? ErrorTypes.Other);
        }

        _loads.Add(1, tags);
        _loadDuration.Record(duration.TotalSeconds, tags);
    }

    /// <summary>Why a load failed, as one of a few fixed words (never the message, which could be anything).</summary>
    public static string ErrorTypeOf(Exception error) => error switch
    {
        OperationCanceledException or TimeoutException => ErrorTypes.Timeout,
        Npgsql.NpgsqlException { InnerException: TimeoutException } => ErrorTypes.Timeout,
        Npgsql.PostgresException => ErrorTypes.Postgres,
        Npgsql.NpgsqlException => ErrorTypes.Connection,
        _ => ErrorTypes.Other,
    };

    /// <summary>The values of the <c>error.type</c> tag of failed loads.</summary>
    public static class ErrorTypes
    {
        /// <summary>The load took longer than <c>StatsCache:Cache:LoadTimeout</c> and was cancelled.</summary>
        public const string Timeout = "timeout";

        /// <summary>PostgreSQL answered with an error (a failing statement, a database refusing connections, ...).</summary>
        public const string Postgres = "postgres";

        /// <summary>PostgreSQL could not be reached or the connection broke.</summary>
        public const string Connection = "connection";

        /// <summary>Anything else (for example a result that does not fit the view's declared shape).</summary>
        public const string Other = "other";
    }

    public void EntryAdded() => _entries.Add(1);

    public void EntryRemoved(string view, string reason)
    {
        _entries.Add(-1);
        _evicted.Add(1, new TagList { { "view", view }, { "reason", reason } });
    }

    public void EntriesReleased(int count) => _entries.Add(-count);

    public void ChangesRouted(Changes.ChangeBatch batch, int invalidations)
    {
        foreach (var notice in batch.Notices)
        {
            _changes.Add(1, new KeyValuePair<string, object?>("table", notice.Table ?? "api"));
        }

        foreach (var table in batch.TablesOfEverySite)
        {
            _changes.Add(1, new KeyValuePair<string, object?>("table", table));
        }

        if (batch.RefreshAll)
        {
            _changes.Add(1, new KeyValuePair<string, object?>("table", "all"));
        }

        _invalidations.Add(invalidations);
    }

    public void FeedConnected(bool again) => _feedConnects.Add(1, new KeyValuePair<string, object?>("reconnect", again));
}

/// <summary>How a read was answered.</summary>
public enum ReadOutcome
{
    /// <summary>From memory, without waiting.</summary>
    Hit,

    /// <summary>After starting a load.</summary>
    Loaded,

    /// <summary>After waiting on a load already in flight.</summary>
    Joined,

    /// <summary>Nothing usable to answer with.</summary>
    Unavailable,
}

/// <summary>What a forced refresh (<c>refresh=true</c>) did.</summary>
public enum RefreshOutcome
{
    /// <summary>Started a load.</summary>
    Loaded,

    /// <summary>Waited on the load already in flight.</summary>
    Joined,

    /// <summary>Started none: the last load ended within <see cref="DashboardCacheOptions.MinRefreshInterval"/>.</summary>
    Floor,
}
