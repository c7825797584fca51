using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Metrics;
using StatsCache.Hosting;

namespace StatsCache.Silo;

/// <summary>
/// The silo's metrics and traces: OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, and Prometheus
/// text on <c>http://*:{Observability:SiloMetricsPort}/metrics</c> when that port is set. The silo has no
/// HTTP server, so Prometheus gets a small HttpListener of its own, off by default.
/// </summary>
public static class SiloTelemetryExtensions
{
    public const string ServiceName = "statscache-silo";

    public static IHostApplicationBuilder AddStatsCacheSiloTelemetry(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<ObservabilityOptions>()
            .BindConfiguration(ObservabilityOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();

        var port = builder.Configuration.GetSection(ObservabilityOptions.SectionName).Get<ObservabilityOptions>()?.SiloMetricsPort ?? 0;
        builder.Services.AddStatsCacheTelemetry(
            builder.Configuration,
            ServiceName,
            metrics: m =>
            {
                if (port > 0)
                {
                    m.AddPrometheusHttpListener(o =>
                    {
                        o.Port = port;

                        // Every interface, any Host header: Prometheus scrapes the pod's or container's address.
                        // (The Host option goes through UriBuilder, which refuses HttpListener's wildcard.)
                        o.ConfigureHttpListener = (_, listener) =>
                        {
                            listener.Prefixes.Clear();
                            listener.Prefixes.Add($"http://*:{port}/");
                        };
                    });
                }
            });
        return builder;
    }
}
