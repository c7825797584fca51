using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using StatsCache.Catalog;
using StatsCache.WebHost.Auth;
using StatsCache.WebHost.Hosting;
using StatsCache.WebHost.NearCache;

namespace StatsCache.WebHost.Api;

/// <summary>
/// <c>/api/dashboards</c>: the caller's views and their snapshots. Errors are problem details
/// (<see cref="ProblemHttpResult"/>, so they are served as application/problem+json).
/// </summary>
public static class DashboardApi
{
    private const string RefreshParameter = "refresh";

    /// <summary>Problem details for every error, the OpenAPI document and the API's options.</summary>
    public static WebApplicationBuilder AddDashboardApi(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ApiOptions>().BindConfiguration(ApiOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddProblemDetails();
        builder.Services.AddOpenApi();
        return builder;
    }

    public static IEndpointRouteBuilder MapDashboardApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/dashboards").RequireAuthorization().RequireRateLimiting(RequestLimitExtensions.PolicyName).WithTags("Dashboards");

        api.MapGet("/", ListViews)
            .WithName("ListDashboards")
            .WithSummary("The views the caller's role may read, with their TTLs and parameters.");

        api.MapGet("/{view}", GetViewAsync)
            .WithName("GetDashboard")
            .WithSummary("The caller's snapshot of a view; ?refresh=true reloads it first.");

        return app;
    }

    internal static Results<Ok<DashboardList>, ProblemHttpResult> ListViews(HttpContext context, DashboardCatalog catalog)
    {
        var caller = CallerOf(context);
        if (!catalog.Roles.Contains(caller.Role))
        {
            return UnknownRole(caller);
        }

        var views = catalog.Views
            .Where(v => v.AllowsRole(caller.Role))
            .Select(v => new DashboardListItem(
                v.Name,
                (int)v.Ttl.TotalSeconds,
                [.. v.Parameters.Select(p => new DashboardParameter(p.Name, "int", p.Default, p.Min, p.Max))]))
            .ToList();
        return TypedResults.Ok(new DashboardList(caller.SiteId, caller.Role, caller.UserId, views));
    }

    internal static async Task<Results<SnapshotResult, StatusCodeHttpResult, ProblemHttpResult>> GetViewAsync(
        string view,
        HttpContext context,
        DashboardCatalog catalog,
        DashboardGrains grains,
        DashboardNearCache nearCache,
        DashboardWatcher watcher,
        IOptions<ApiOptions> options,
        ApiMetrics metrics,
        ILoggerFactory loggers)
    {
        if (!TryResolve(view, context, catalog, out var read, out var problem))
        {
            return problem;
        }

        var (caller, definition, parameters, refresh) = read;
        var key = new NearKey(caller.SiteId, caller.Role, definition.Scope == ViewScope.Site ? 0 : caller.UserId, definition.Name, parameters.Key);
        if (!refresh && nearCache.IsEnabled && nearCache.TryGet(key, out var held, out var heldRefreshIn))
        {
            return Answer(context, read, held, stale: false, heldRefreshIn);
        }

        DashboardResult result;
        var readStarted = nearCache.ReadStarting();
        var watching = watcher.Reference;
        try
        {
            var grain = grains.User(caller.SiteId, caller.Role, caller.UserId);
            var request = new DashboardRequest(definition.Name, parameters.Key, refresh, watching, nearCache.LeaseDuration);
            result = await GrainCalls.ReadAsync(
                static (call, ct) => call.grain.GetAsync(call.request, ct), (grain, request), options.Value, context.RequestAborted);
        }
        catch (Exception e) when (e is OrleansException or TimeoutException || (e is OperationCanceledException && !context.RequestAborted.IsCancellationRequested))
        {
            loggers.CreateLogger(typeof(DashboardApi)).LogWarning(e, "The cluster did not answer a read of {View}", definition.Name);
            return Unavailable(context.Response, "The cache cluster is unavailable.", TimeSpan.FromSeconds(1));
        }

        if (result.Refused)
        {
            metrics.Refused(RefusalReason.NewEntries);
            return TooFast(context.Response, result.NextRefreshIn,
                $"Reading '{definition.Name}' with parameters nobody has read lately starts a database load, and you have started too many; what is cached still answers.");
        }

        if (result.Snapshot is not { } snapshot)
        {
            return Unavailable(context.Response, "The data source is unavailable.", result.NextRefreshIn,
                $"View '{definition.Name}' has no usable snapshot and loading it failed; retry later.");
        }

        if (watching is not null)
        {
            nearCache.Store(key, result, definition.Ttl, readStarted);
        }

        return Answer(context, read, snapshot, result.Stale, result.NextRefreshIn);
    }

    // The same answer from the grain's result or the near-cache's copy of it.
    private static Results<SnapshotResult, StatusCodeHttpResult, ProblemHttpResult> Answer(
        HttpContext context, ViewRead read, DashboardSnapshot snapshot, bool stale, TimeSpan nextRefreshIn) =>
        SnapshotResult.SetCacheHeaders(context, snapshot, stale, nextRefreshIn)
            ? TypedResults.StatusCode(StatusCodes.Status304NotModified)
            : new SnapshotResult(read.Caller, read.View, read.Parameters, snapshot, stale);

    /// <summary>
    /// The checks every read of a view goes through, in order: the view exists (404), the caller's
    /// role may read it (403), its parameters are valid (400). Also used by the benchmark contenders,
    /// so they validate exactly as this API does.
    /// </summary>
    internal static bool TryResolve(
        string view, HttpContext context, DashboardCatalog catalog,
        out ViewRead read, [NotNullWhen(false)] out ProblemHttpResult? problem)
    {
        read = default;
        var caller = CallerOf(context);
        if (catalog.Find(view) is not { } definition)
        {
            problem = Problem(StatusCodes.Status404NotFound, "Unknown view.", $"There is no dashboard view named '{Shorten(view)}'.");
            return false;
        }

        if (!definition.AllowsRole(caller.Role))
        {
            problem = catalog.Roles.Contains(caller.Role)
                ? Problem(StatusCodes.Status403Forbidden, "This view is not available to your role.",
                    $"View '{definition.Name}' is for {string.Join(", ", definition.Roles)}; the token's role is '{caller.Role}'.")
                : UnknownRole(caller);
            return false;
        }

        if (!TryReadQuery(context.Request.Query, definition, out var parameters, out var refresh, out var error))
        {
            problem = Problem(StatusCodes.Status400BadRequest, error);
            return false;
        }

        read = new ViewRead(caller, definition, parameters, refresh);
        problem = null;
        return true;
    }

    /// <summary>Binds the view's parameters and <c>refresh</c>; a repeated, unknown or malformed one is an error naming it.</summary>
    private static bool TryReadQuery(
        IQueryCollection query, ViewDefinition view, out BoundParameters parameters, out bool refresh, out string error)
    {
        parameters = view.DefaultParameters;
        refresh = false;
        if (query.Count == 0)
        {
            // Most reads carry no query string: no dictionary to fill, the defaults are already bound.
            error = "";
            return true;
        }

        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in query)
        {
            if (value.Count != 1)
            {
                error = $"Parameter '{Shorten(name)}' must be given exactly once.";
                return false;
            }

            if (name == RefreshParameter)
            {
                // Only 'true' or 'false' (any case): bool.TryParse would also take " true" and "true\0".
                refresh = string.Equals(value[0], "true", StringComparison.OrdinalIgnoreCase);
                if (!refresh && !string.Equals(value[0], "false", StringComparison.OrdinalIgnoreCase))
                {
                    error = $"Parameter '{RefreshParameter}' must be true or false.";
                    return false;
                }

                continue;
            }

            values[name] = value[0] ?? "";
        }

        return view.TryBind(values, out parameters, out error);
    }

    /// <summary>The caller authentication validated and kept (see AuthenticationExtensions): every route here requires it.</summary>
    internal static Caller CallerOf(HttpContext context) =>
        context.Features.Get<Caller>() ?? throw new InvalidOperationException("The request has no authenticated caller.");

    private static ProblemHttpResult UnknownRole(Caller caller) =>
        Problem(StatusCodes.Status403Forbidden, "Your role has no dashboards.", $"No view is declared for role '{caller.Role}'.");

    private static ProblemHttpResult Unavailable(HttpResponse response, string title, TimeSpan retryAfter, string? detail = null)
    {
        SetRetryAfter(response, retryAfter);
        return Problem(StatusCodes.Status503ServiceUnavailable, title, detail);
    }

    /// <summary>429: one caller asks too fast (the request limit, or the budget of new entries).</summary>
    internal static ProblemHttpResult TooFast(HttpResponse response, TimeSpan retryAfter, string detail)
    {
        SetRetryAfter(response, retryAfter);
        return Problem(StatusCodes.Status429TooManyRequests, "You are asking too fast.", detail);
    }

    // Whole seconds, at least one (a Retry-After of 0 invites an immediate retry).
    private static void SetRetryAfter(HttpResponse response, TimeSpan retryAfter) =>
        response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);

    private static ProblemHttpResult Problem(int status, string title, string? detail = null) =>
        TypedResults.Problem(title: title, detail: detail, statusCode: status);

    // Names from the URL are echoed in errors; keep them short.
    private static string Shorten(string text) => text.Length <= 64 ? text : string.Concat(text.AsSpan(0, 64), "…");
}

/// <summary>The answer of <c>GET /api/dashboards</c>.</summary>
public sealed record DashboardList(long Site, string Role, long User, IReadOnlyList<DashboardListItem> Views);

public sealed record DashboardListItem(string Name, int TtlSeconds, IReadOnlyList<DashboardParameter> Parameters);

public sealed record DashboardParameter(string Name, string Type, int Default, int Min, int Max);

/// <summary>A validated read: who asks, for which view, with which canonical parameters.</summary>
internal readonly record struct ViewRead(Caller Caller, ViewDefinition View, BoundParameters Parameters, bool Refresh);
