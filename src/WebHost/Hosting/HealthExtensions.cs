using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using Orleans.Runtime;
using StatsCache.Source;

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

    /// <summary>
    /// The primary and each read replica: healthy when all answer; degraded (still ready) while the primary or a replica does
    /// not but some server can serve loads (the primary down: entries refresh from the replicas, the change feed waits);
    /// unhealthy when none can. The description names which answer.
    /// </summary>
    private sealed class PostgresHealthCheck(StatsDatabases databases) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            var primary = AnswersAsync(databases.Primary, "select true", cancellationToken);
            var replicas = databases.Replicas.Select(r => AnswersAsync(r.DataSource, "select pg_is_in_recovery()", cancellationToken)).ToArray();
            if (replicas.Length == 0)
            {
                return await primary ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("PostgreSQL does not answer.");
            }

            var up = await Task.WhenAll(replicas);
            var description = string.Join(", ", [
                $"primary {(await primary ? "up" : "down")}",
                .. databases.Replicas.Select((r, i) => $"{r.Name} {(up[i] ? "up" : "down")}")]);
            return await primary && up.All(u => u) ? HealthCheckResult.Healthy(description)
                : await primary || up.Any(u => u) ? HealthCheckResult.Degraded(description)
                : HealthCheckResult.Unhealthy(description);
        }

        // A replica must still be one: a promoted one is another primary, which the loads do not use.
        private static async Task<bool> AnswersAsync(NpgsqlDataSource dataSource, string sql, CancellationToken cancellationToken)
        {
            try
            {
                await using var command = dataSource.CreateCommand(sql);
                return await command.ExecuteScalarAsync(cancellationToken) is true;
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException)
            {
                return false;
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
