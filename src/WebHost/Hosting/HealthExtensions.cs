using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using Orleans.Runtime;

namespace StatsCache.WebHost.Hosting;

/// <summary>Liveness (the process answers) and readiness (PostgreSQL and the Orleans cluster answer).</summary>
public static class HealthExtensions
{
    public const string LivenessPath = "/healthz";
    public const string ReadinessPath = "/readyz";
    private const string ReadyTag = "ready";

    public static WebApplicationBuilder AddStatsCacheHealthChecks(this WebApplicationBuilder builder)
    {
        builder.Services.AddHealthChecks()
            .AddCheck<PostgresHealthCheck>("postgresql", tags: [ReadyTag], timeout: TimeSpan.FromSeconds(3))
            .AddCheck<ClusterHealthCheck>("orleans", tags: [ReadyTag], timeout: TimeSpan.FromSeconds(3));
        return builder;
    }

    public static IEndpointRouteBuilder MapStatsCacheHealthChecks(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks(LivenessPath, new() { Predicate = _ => false, ResponseWriter = WriteAsync });
        app.MapHealthChecks(ReadinessPath, new() { Predicate = check => check.Tags.Contains(ReadyTag), ResponseWriter = WriteAsync });
        return app;
    }

    /// <summary>
    /// <c>{"status":"Unhealthy","checks":{"postgresql":{"status":"Unhealthy","description":"PostgreSQL does not answer."},...}}</c>:
    /// each check's name, status and our own fixed description, never an exception's text (which
    /// could name a host, a database or a user).
    /// </summary>
    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        return context.Response.WriteAsJsonAsync(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(
                e => e.Key,
                e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
        });
    }

    private sealed class PostgresHealthCheck(NpgsqlDataSource dataSource) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            try
            {
                await using var command = dataSource.CreateCommand("select 1");
                await command.ExecuteScalarAsync(cancellationToken);
                return HealthCheckResult.Healthy();
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException)
            {
                return HealthCheckResult.Unhealthy("PostgreSQL does not answer.");
            }
        }
    }

    private sealed class ClusterHealthCheck(IGrainFactory grains) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            try
            {
                var hosts = await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).WaitAsync(cancellationToken);
                return hosts.Count > 0
                    ? HealthCheckResult.Healthy($"{hosts.Count} active silo(s).")
                    : HealthCheckResult.Unhealthy("The cluster has no active silo.");
            }
            catch (Exception e) when (e is OrleansException or TimeoutException or OperationCanceledException or InvalidOperationException)
            {
                return HealthCheckResult.Unhealthy("The Orleans cluster does not answer.");
            }
        }
    }
}
