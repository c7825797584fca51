using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Npgsql;
using StatsCache.Catalog;
using StatsCache.Changes;
using StatsCache.WebHost.Auth;
using StatsCache.WebHost.Hosting;

namespace StatsCache.WebHost.Api;

/// <summary>
/// <c>POST /api/dashboards/invalidate</c>: for systems that write somewhere the change feed does not see. The request is
/// published on the same feed (a logical decoding message in the WAL, or a NOTIFY), so every silo refreshes what it holds,
/// debounced, exactly as for a write's change.
/// </summary>
public static class InvalidationApi
{
    public const string ServiceRole = "service";

    // NOTIFY payloads are limited to 8000 bytes; 500 ids stay well inside (and keep a WAL message small).
    private const int MaxUsers = 500;
    private const int MaxBodyBytes = 64 * 1024;

    public static IEndpointRouteBuilder MapInvalidationApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/dashboards/invalidate", InvalidateAsync)
            .RequireAuthorization()
            .RequireRequestLimit()
            .WithTags("Dashboards")
            .WithName("InvalidateDashboards")
            .WithSummary("Refresh the site's cached views (for some users, some views) after a write the triggers do not see; role 'service'.")
            .Accepts<InvalidationRequest>("application/json");
        return app;
    }

    internal static async Task<Results<Accepted, ProblemHttpResult>> InvalidateAsync(
        HttpRequest request, DashboardCatalog catalog, NpgsqlDataSource dataSource, IOptions<ChangeFeedOptions> changes)
    {
        var caller = DashboardApi.CallerOf(request.HttpContext);
        if (caller.Role != ServiceRole)
        {
            return Problem(StatusCodes.Status403Forbidden, $"Only the '{ServiceRole}' role may invalidate dashboards.");
        }

        if (request.ContentLength > MaxBodyBytes)
        {
            return Problem(StatusCodes.Status413PayloadTooLarge, $"The body must be at most {MaxBodyBytes} bytes.");
        }

        InvalidationRequest? body;
        try
        {
            body = await JsonSerializer.DeserializeAsync<InvalidationRequest>(request.Body, JsonSerializerOptions.Web, request.HttpContext.RequestAborted);
        }
        catch (JsonException)
        {
            return Problem(StatusCodes.Status400BadRequest, "The body must be JSON: {\"site\": 1, \"users\": [42], \"views\": [\"client-stats\"]}.");
        }

        if (body?.Site is not { } site || site <= 0)
        {
            return Problem(StatusCodes.Status400BadRequest, "Field 'site' must be a positive integer.");
        }

        if (site != caller.SiteId)
        {
            return Problem(StatusCodes.Status403Forbidden, "Field 'site' must be the token's own site.");
        }

        if (body.Users is { } users && (users.Length > MaxUsers || users.Any(u => u <= 0)))
        {
            return Problem(StatusCodes.Status400BadRequest, $"Field 'users' must list at most {MaxUsers} positive integers.");
        }

        if (body.Views?.FirstOrDefault(v => catalog.Find(v ?? "") is null) is { } unknown)
        {
            return Problem(StatusCodes.Status400BadRequest, $"Field 'views' names an unknown view '{(unknown.Length <= 64 ? unknown : unknown[..64])}'.");
        }

        var notice = new ChangeNotice(null, site, body.Users is null ? null : [.. body.Users.Distinct()], body.Views is null ? null : [.. body.Views.Distinct()!]);
        await notice.PublishAsync(dataSource, changes.Value.Source, request.HttpContext.RequestAborted);
        return TypedResults.Accepted((string?)null);
    }

    private static ProblemHttpResult Problem(int status, string title) => TypedResults.Problem(title: title, statusCode: status);
}

/// <summary>The body of <c>POST /api/dashboards/invalidate</c>: a site, and optionally which users and views (default: all).</summary>
public sealed record InvalidationRequest(long? Site, long[]? Users, string?[]? Views);
