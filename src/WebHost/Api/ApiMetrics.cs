using System.Diagnostics.Metrics;
using StatsCache.Cache;

namespace StatsCache.WebHost.Api;

/// <summary>What the web host refuses, on the <c>StatsCache</c> meter beside the grains' instruments.</summary>
public sealed class ApiMetrics(IMeterFactory meterFactory)
{
    private readonly Counter<long> _refusals = meterFactory.Create(DashboardMetrics.MeterName).CreateCounter<long>(
        "statscache.refusals", "{request}", "Requests refused with 429, by reason: request-rate (the per-caller request limit) or new-entries (the per-caller budget of loads for entries not cached).");

    public void Refused(RefusalReason reason) => _refusals.Add(1, new KeyValuePair<string, object?>(
        "reason", reason == RefusalReason.RequestRate ? "request-rate" : "new-entries"));
}

/// <summary>Why a request got 429.</summary>
public enum RefusalReason
{
    /// <summary>The caller sent more requests than <c>StatsCache:RequestLimit</c> allows this web host.</summary>
    RequestRate,

    /// <summary>The caller asked for more entries not cached than <c>StatsCache:Cache:NewEntryBurst</c> and <c>NewEntriesPerSecond</c> allow.</summary>
    NewEntries,
}
