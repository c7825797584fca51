using System.ComponentModel.DataAnnotations;

namespace StatsCache.WebHost.Api;

/// <summary>The HTTP API's settings (section <c>StatsCache:Api</c>).</summary>
public sealed class ApiOptions
{
    public const string SectionName = "StatsCache:Api";

    /// <summary>
    /// How long a read keeps retrying grain calls that a silo going away rejected or lost, or that a hung silo never
    /// answers, before it answers 503 (<i>The cache cluster is unavailable.</i>, with <c>Retry-After</c>). A hard bound,
    /// counted from the read's first call: the calls after it, and the waits between them, are cancelled when it runs
    /// out. The first call alone is bounded by the read method's response timeout
    /// (<see cref="IUserDashboardGrain.ReadTimeout"/>, 3 s, which Orleans checks once a second), so a read answers
    /// within the longer of this and that timeout (plus up to a second), plus scheduling. The default, 8 s, covers a
    /// failover after a silo dies with room to spare (<c>ClusterTests.KillingASiloUnderLoad…</c>: the slowest read took up
    /// to 4.6 s in most runs, but past 5 s in one of three with the earlier 5 s default, failing 8 reads).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan GrainRetryTimeout { get; set; } = TimeSpan.FromSeconds(8);
}
