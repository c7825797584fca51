using System.ComponentModel.DataAnnotations;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Auth;

namespace StatsCache.WebHost.Hosting;

/// <summary>
/// A request rate per caller (the token's site, role and user; never the client's address), with ASP.NET
/// Core's rate limiter: a token bucket per caller in this web host, checked after authentication and
/// before any grain call. Only the dashboard API asks for it (<see cref="PolicyName"/>): health, readiness,
/// metrics and the OpenAPI document are never limited. Past it: 429 problem details with <c>Retry-After</c>.
/// </summary>
public static class RequestLimitExtensions
{
    public const string PolicyName = "caller";

    // The partition of requests the limit does not apply to (it is switched off).
    private static readonly Caller Unlimited = new(0, "", 0);

    public static WebApplicationBuilder AddStatsCacheRequestLimits(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RequestLimitOptions>()
            .BindConfiguration(RequestLimitOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddSingleton<ApiMetrics>();
        builder.Services.AddRateLimiter(_ => { });
        builder.Services.AddOptions<RateLimiterOptions>().Configure<IOptions<RequestLimitOptions>>((limiter, limits) =>
        {
            var options = limits.Value;
            limiter.AddPolicy(PolicyName, context => options.IsEnabled && context.Features.Get<Caller>() is { } caller
                ? RateLimitPartition.GetTokenBucketLimiter(caller, _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = options.Burst,
                    TokensPerPeriod = options.RequestsPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0, // refuse at once: a queued request would only hold a connection longer
                })
                : RateLimitPartition.GetNoLimiter(Unlimited));
            limiter.OnRejected = async (rejected, requestAborted) =>
            {
                var context = rejected.HttpContext;
                context.RequestServices.GetRequiredService<ApiMetrics>().Refused(RefusalReason.RequestRate);
                var retryAfter = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? after : TimeSpan.FromSeconds(1);
                var delay = retryAfter < options.RejectionDelay ? retryAfter : options.RejectionDelay;
                if (delay > TimeSpan.Zero)
                {
                    await Task.Delay(delay, requestAborted);
                }

                await DashboardApi.TooFast(context.Response, retryAfter,
                    $"At most {options.RequestsPerSecond} requests a second (bursts of {options.Burst}) are answered for one caller.")
                    .ExecuteAsync(context);
            };
        });
        return builder;
    }

    /// <summary>Runs after authentication, which names the caller the limit is partitioned by.</summary>
    public static IApplicationBuilder UseStatsCacheRequestLimits(this IApplicationBuilder app) => app.UseRateLimiter();
}

/// <summary>The per-caller request limit of each web host (section <c>StatsCache:RequestLimit</c>).</summary>
public sealed class RequestLimitOptions
{
    public const string SectionName = "StatsCache:RequestLimit";

    public bool IsEnabled { get; set; } = true;

    /// <summary>Requests a second one caller may keep sending to one web host.</summary>
    [Range(1, 1_000_000)]
    public int RequestsPerSecond { get; set; } = 50;

    /// <summary>Requests one caller may send at once before the rate applies.</summary>
    [Range(1, 1_000_000)]
    public int Burst { get; set; } = 100;

    /// <summary>
    /// How long a refused request waits before its 429 is sent (never longer than its Retry-After). A flood retries at
    /// once on every connection it holds; held this long, it gets one answer per connection per delay, so refusing it
    /// costs the web host next to nothing and leaves the cores to the other callers. Zero: refused at once.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:00:10")]
    public TimeSpan RejectionDelay { get; set; } = TimeSpan.FromSeconds(1);
}
