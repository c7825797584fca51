using System.ComponentModel.DataAnnotations;

namespace StatsCache.WebHost.Api;

/// <summary>The HTTP API's settings (section <c>StatsCache:Api</c>).</summary>
public sealed class ApiOptions
{
    public const string SectionName = "StatsCache:Api";

    /// <summary>How long a read keeps retrying calls rejected by, or lost in, a silo that is going away before answering 503.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan GrainRetryTimeout { get; set; } = TimeSpan.FromSeconds(10);
}
