using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Auth;

namespace StatsCache.WebHost.Hosting;

/// <summary>
/// A request rate per caller (the token's site, role and user; never the client's address): a token bucket per caller in
/// this web host (<see cref="RequestLimiter"/>), checked after authentication and authorization and before any grain call.
/// Only the endpoints that ask for it (<see cref="RequireRequestLimit{TBuilder}"/>: the dashboard API) are limited: health,
/// readiness, metrics and the OpenAPI document never are. Past it: 429 problem details with <c>Retry-After</c>.
/// </summary>
public static class RequestLimitExtensions
{
    public static WebApplicationBuilder AddStatsCacheRequestLimits(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RequestLimitOptions>()
            .BindConfiguration(RequestLimitOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddSingleton<ApiMetrics>();
        builder.Services.AddSingleton<RequestLimiter>();
        builder.Services.AddHostedService<RequestLimitSweep>();
        return builder;
    }

    /// <summary>Limits the requests of each caller to these endpoints (see <see cref="UseStatsCacheRequestLimits"/>).</summary>
    public static TBuilder RequireRequestLimit<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(RequestLimitMetadata.Instance);

    /// <summary>
    /// Runs after authentication, which names the caller the limit is partitioned by (and after routing, which names the
    /// endpoint). A request past the limit is counted (<c>statscache.refusals{reason=request-rate}</c>), held for
    /// <see cref="RequestLimitOptions.RejectionDelay"/> (at most its Retry-After), then answered 429. Switched off, the
    /// middleware is not there at all.
    /// </summary>
    public static IApplicationBuilder UseStatsCacheRequestLimits(this IApplicationBuilder app) => app.Use(next =>
    {
        var services = app.ApplicationServices;
        var options = services.GetRequiredService<IOptions<RequestLimitOptions>>().Value;
        if (!options.IsEnabled)
        {
            return next;
        }

        var limiter = services.GetRequiredService<RequestLimiter>();
        var metrics = services.GetRequiredService<ApiMetrics>();
        var time = services.GetRequiredService<TimeProvider>();
        var detail = $"At most {options.RequestsPerSecond} requests a second (bursts of {options.Burst}) are answered for one caller.";
        return context =>
        {
            if (context.GetEndpoint()?.Metadata.GetMetadata<RequestLimitMetadata>() is null
                || context.Features.Get<Caller>() is not { } caller
                || limiter.TryTake(caller, out var retryAfter))
            {
                return next(context);
            }

            return RefuseAsync(context, retryAfter);
        };

        async Task RefuseAsync(HttpContext context, TimeSpan retryAfter)
        {
            metrics.Refused(RefusalReason.RequestRate);
            var delay = retryAfter < options.RejectionDelay ? retryAfter : options.RejectionDelay;
            if (delay > TimeSpan.Zero)
            {
                await Task.Delay(delay, time, context.RequestAborted);
            }

            await DashboardApi.TooFast(context.Response, retryAfter, detail).ExecuteAsync(context);
        }
    });

    /// <summary>The endpoint metadata of <see cref="RequireRequestLimit{TBuilder}"/>.</summary>
    private sealed class RequestLimitMetadata
    {
        public static readonly RequestLimitMetadata Instance = new();
    }
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
