using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.IdentityModel.Tokens;
using OpenTelemetry.Metrics;
using StatsCache.Hosting;
using StatsCache.WebHost.Auth;

namespace StatsCache.Benchmarks;

/// <summary>
/// The physical limit of a cached read, for hit to measure StatsCache against: an endpoint that answers
/// <c>GET /api/dashboards/{view}</c> with a real answer's bytes, held in memory, behind the same JWT validation as
/// src/WebHost, written as a new user would write it. <c>minimal</c> is the slim builder and nothing else;
/// <c>minimal --metrics</c> adds what src/WebHost pays on every request besides its cache: the default builder,
/// the exception handler with problem details, status code pages, and the same OpenTelemetry metrics.
/// Each runs in a process of its own, started by the driver.
/// </summary>
public static class MinimalEndpoint
{
    /// <summary>The file with the bytes to answer: the hot user's <c>client-stats</c> answer as the API writes it.</summary>
    public const string PayloadPathKey = "Bench:MinimalPayloadPath";

    /// <summary>Bytes this process has allocated so far (<see cref="GC.GetTotalAllocatedBytes"/>), a JSON number; anonymous.</summary>
    public const string AllocatedPath = "/bench/allocated";

    public static async Task<int> RunAsync(string[] args)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        AddBearerTokens(builder);

        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();
        MapEndpoints(app);
        await app.RunAsync();
        return 0;
    }

    public static async Task<int> RunWithMetricsAsync(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);
        builder.Services.AddProblemDetails();
        AddBearerTokens(builder);
        // Exactly the metrics src/WebHost exports (ObservabilityExtensions): the shared meters, ASP.NET Core's, Prometheus.
        builder.Services.AddStatsCacheTelemetry(
            builder.Configuration, "minimal", metrics => metrics.AddAspNetCoreInstrumentation().AddPrometheusExporter());

        var app = builder.Build();
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapPrometheusScrapingEndpoint("/metrics");
        MapEndpoints(app);
        await app.RunAsync();
        return 0;
    }

    /// <summary>
    /// What src/WebHost's validation checks for the benchmark's tokens (AuthenticationExtensions with only a shared secret):
    /// the key built as TokenIssuer builds it, the HMAC algorithms TokenKeys allows, issuer, audience, a signature and an expiry.
    /// </summary>
    private static void AddBearerTokens(WebApplicationBuilder builder)
    {
        var auth = builder.Configuration.GetSection(AuthOptions.SectionName);
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(jwt =>
        {
            jwt.MapInboundClaims = false;
            jwt.SaveToken = false;
            jwt.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = Required(auth, nameof(AuthOptions.Issuer)),
                ValidAudience = Required(auth, nameof(AuthOptions.Audience)),
                IssuerSigningKey = TokenIssuer.SigningKey(Required(auth, nameof(AuthOptions.SigningKey))),
                ValidAlgorithms = TokenKeys.HmacAlgorithms,
                RequireSignedTokens = true,
                RequireExpirationTime = true,
            };
        });
        builder.Services.AddAuthorization();
    }

    private static void MapEndpoints(WebApplication app)
    {
        var payloadPath = app.Configuration[PayloadPathKey] ?? throw new InvalidOperationException($"{PayloadPathKey} is not set.");
        var payload = File.ReadAllBytes(payloadPath);
        app.MapGet("/api/dashboards/{view}", () => Results.Bytes(payload, "application/json; charset=utf-8")).RequireAuthorization();
        app.MapGet(AllocatedPath, () => GC.GetTotalAllocatedBytes());
    }

    private static string Required(IConfigurationSection section, string key) =>
        section[key] is { Length: > 0 } value ? value : throw new InvalidOperationException($"{section.Path}:{key} is not set.");
}
