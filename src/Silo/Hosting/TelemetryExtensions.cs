using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using StatsCache.Cache;
using OrleansActivitySources = Orleans.Diagnostics.ActivitySources;

namespace StatsCache.Hosting;

/// <summary>
/// OpenTelemetry shared by the web host and the silo: the <c>StatsCache</c>, Orleans, Npgsql and
/// runtime meters always (each host adds its exporter); traces of grain calls and SQL batches, and
/// OTLP export of metrics, traces and logs, when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set.
/// </summary>
public static class TelemetryExtensions
{
    /// <summary>The OpenTelemetry SDK's own variable (also read as a configuration key): where OTLP goes.</summary>
    public const string OtlpEndpointKey = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <summary>Orleans' meter: grain calls, activations, messaging, membership.</summary>
    public const string OrleansMeterName = "Microsoft.Orleans";

    public static bool IsOtlpEnabled(IConfiguration configuration) => !string.IsNullOrWhiteSpace(configuration[OtlpEndpointKey]);

    public static OpenTelemetryBuilder AddStatsCacheTelemetry(
        this IServiceCollection services,
        IConfiguration configuration,
        string serviceName,
        Action<MeterProviderBuilder>? metrics = null,
        Action<TracerProviderBuilder>? tracing = null)
    {
        var telemetry = services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(serviceName))
            .WithMetrics(meters =>
            {
                meters.AddMeter(DashboardMetrics.MeterName, OrleansMeterName)
                    .AddRuntimeInstrumentation()
                    .AddNpgsqlInstrumentation();
                metrics?.Invoke(meters);
            });

        // Without an endpoint nothing would read the spans: do not record them at all.
        if (IsOtlpEnabled(configuration))
        {
            telemetry.WithTracing(traces =>
            {
                // Grain calls (with Orleans' activity propagation, a request's trace crosses into the
                // grain) and grain storage; not the runtime's own chatter (membership probes, directory).
                traces.AddSource(OrleansActivitySources.ApplicationGrainActivitySourceName, OrleansActivitySources.StorageActivitySourceName)
                    .AddNpgsql();
                tracing?.Invoke(traces);
            });
            telemetry.UseOtlpExporter();
        }

        return telemetry;
    }
}
