using Microsoft.AspNetCore.Http.Features;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using StatsCache.Catalog;
using StatsCache.Hosting;

namespace StatsCache.WebHost.Hosting;

/// <summary>
/// Metrics on <c>GET /metrics</c> (Prometheus text): the shared meters of <see cref="TelemetryExtensions"/>
/// plus ASP.NET Core's, whose request duration carries the view; traces from the HTTP request down
/// to the SQL batch when an OTLP endpoint is configured.
/// </summary>
public static class ObservabilityExtensions
{
    public const string MetricsPath = "/metrics";
    public const string ServiceName = "statscache-webhost";

    /// <summary>The tag that names the view on ASP.NET Core's request metrics, as on the <c>statscache.*</c> ones.</summary>
    public const string ViewTag = "view";

    public static WebApplicationBuilder AddStatsCacheObservability(this WebApplicationBuilder builder)
    {
        builder.Services.AddStatsCacheTelemetry(
            builder.Configuration,
            ServiceName,
            metrics => metrics.AddAspNetCoreInstrumentation().AddPrometheusExporter(),
            tracing => tracing.AddAspNetCoreInstrumentation(o => o.Filter = context => !IsOperational(context.Request.Path)));
        return builder;
    }

    /// <summary>
    /// Tags ASP.NET Core's <c>http.server.request.duration</c> of a dashboard read with its view. Only
    /// views the catalog declares are tagged (an unknown name stays untagged), so the series are bounded.
    /// Runs after routing (which WebApplication puts first) and before authentication, so 401s are tagged too.
    /// </summary>
    public static IApplicationBuilder UseStatsCacheRequestMetrics(this IApplicationBuilder app)
    {
        var catalog = app.ApplicationServices.GetRequiredService<DashboardCatalog>();
        return app.Use((context, next) =>
        {
            if (context.GetRouteValue(ViewTag) is string name
                && catalog.Find(name) is { } view
                && context.Features.Get<IHttpMetricsTagsFeature>() is { } metrics)
            {
                metrics.Tags.Add(new(ViewTag, view.Name));
            }

            return next(context);
        });
    }

    public static IEndpointRouteBuilder MapStatsCacheMetrics(this IEndpointRouteBuilder app)
    {
        app.MapPrometheusScrapingEndpoint(MetricsPath);
        return app;
    }

    private static bool IsOperational(PathString path) =>
        path.StartsWithSegments(MetricsPath) || path.StartsWithSegments(HealthExtensions.LivenessPath) || path.StartsWithSegments(HealthExtensions.ReadinessPath);
}
